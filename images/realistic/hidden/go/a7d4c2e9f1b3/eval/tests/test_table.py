from _common import SALES, run

TABLE = """\
column  count  empty  min  max    sum         mean     type
region      4      0    -    -      -            -  text(5)
units       3      1    4   10     20  6.666666667   number
price       4      0  2.5   10  29.75       7.4375   number
note        3      1    -    -      -            -  text(4)
4 rows
"""

def test_table_of_standard_input():
    r = run(stdin=SALES)
    assert (r.returncode, r.stdout) == (0, TABLE)


def test_table_of_a_file(tmp_path):
    (tmp_path / "sales.csv").write_text(SALES)
    assert run(tmp_path / "sales.csv").stdout == TABLE


def test_json_output():
    r = run("-j", stdin=SALES)
    assert r.stdout.splitlines()[1] == (
        '{"name":"units","count":3,"empty":1,"type":"number","min":4,"max":10,"sum":20,"mean":6.666666667}'
    )
    assert r.stdout.splitlines()[0] == '{"name":"region","count":4,"empty":0,"type":"text"}'


def test_columns_by_name_and_index():
    r = run("-c", "price,1", "-j", stdin=SALES)
    assert [line.split(",")[0] for line in r.stdout.splitlines()] == ['{"name":"price"', '{"name":"region"']


def test_short_records_count_as_empty():
    r = run("-j", stdin="a,b\n1\n2,3\n")
    assert r.stdout.splitlines()[1] == '{"name":"b","count":1,"empty":1,"type":"number","min":3,"max":3,"sum":3,"mean":3}'
