from _common import SALES, big_csv, run


def test_other_delimiter():
    r = run("-d", ";", "-j", "-c", "units", stdin=SALES.replace(",", ";"))
    assert r.stdout == '{"name":"units","count":3,"empty":1,"type":"number","min":4,"max":10,"sum":20,"mean":6.666666667}\n'


def test_missing_file(tmp_path):
    r = run(tmp_path / "nope.csv")
    assert (r.returncode, r.stderr) == (1, f"csvstat: {tmp_path}/nope.csv: No such file or directory\n")


def test_unknown_column_exits_2():
    r = run("-c", "weight", stdin=SALES)
    assert (r.returncode, r.stderr) == (2, 'csvstat: no column named "weight"\n')


def test_version_and_help():
    assert run("--version").stdout == "csvstat 0.9.3\n"
    assert run("--help").stdout.startswith("Usage: csvstat [OPTIONS] [FILE]")


def test_large_file(tmp_path):
    rows, total = big_csv(tmp_path / "big.csv")
    r = run("-j", "-c", "score", tmp_path / "big.csv")
    assert r.returncode == 0, r.stderr
    assert f'"count":{rows},' in r.stdout and f'"sum":{total},' in r.stdout
