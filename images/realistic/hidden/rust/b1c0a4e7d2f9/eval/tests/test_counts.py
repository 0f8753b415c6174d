from _common import big_text, counts, run

TEXT = b"one two  three\nfour\tfive\n\nsix"


def test_counts_of_standard_input():
    r = run(stdin=TEXT)
    assert (r.returncode, r.stdout) == (0, b"3 6 29\n")


def test_counts_per_file_and_total(tmp_path):
    (tmp_path / "a").write_bytes(TEXT)
    (tmp_path / "b").write_bytes(b"x y\n")
    r = run(tmp_path / "a", tmp_path / "b")
    assert r.stdout.decode().splitlines() == [f"3 6 29 {tmp_path}/a", f"1 2 4 {tmp_path}/b", "4 8 33 total"]


def test_selected_fields_keep_their_order():
    assert run("-c", "-l", stdin=TEXT).stdout == b"3 29\n"
    assert run("--words", stdin=TEXT).stdout == b"6\n"


def test_missing_file_is_reported_and_the_rest_counted(tmp_path):
    (tmp_path / "a").write_bytes(b"a b\n")
    r = run(tmp_path / "nope", tmp_path / "a")
    assert r.returncode == 1
    assert r.stderr == f"tally: {tmp_path}/nope: No such file or directory\n".encode()
    assert r.stdout.decode().splitlines()[0] == f"1 2 4 {tmp_path}/a"


def test_counts_of_a_large_file(tmp_path):
    data = big_text(tmp_path / "big.txt")
    lines, words, size = counts(data)
    assert run(tmp_path / "big.txt").stdout == f"{lines} {words} {size} {tmp_path}/big.txt\n".encode()
