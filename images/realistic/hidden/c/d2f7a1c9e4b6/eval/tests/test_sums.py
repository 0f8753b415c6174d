from _common import crc, run


def test_crc_of_standard_input():
    r = run(stdin=b"123456789")
    assert (r.returncode, r.stdout) == (0, b"3421780262 9 -\n")


def test_hex_and_quiet():
    assert run("-x", stdin=b"hello\n").stdout == b"%08x 6 -\n" % crc(b"hello\n")
    assert run("-xq", stdin=b"hello\n").stdout == b"%08x\n" % crc(b"hello\n")


def test_several_files(tmp_path):
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"\x00" * 1000)
    r = run(tmp_path / "a", tmp_path / "b")
    assert r.stdout.decode().splitlines() == [f"0 0 {tmp_path}/a", f"{crc(bytes(1000))} 1000 {tmp_path}/b"]


def test_double_dash_ends_options(tmp_path):
    (tmp_path / "-q").write_bytes(b"abc")
    r = run("-q", "--", tmp_path / "-q")
    assert r.stdout == b"%d\n" % crc(b"abc")


def test_dash_reads_standard_input():
    assert run("-q", "-", stdin=b"abc").stdout == b"%d\n" % crc(b"abc")
