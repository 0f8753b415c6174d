import os

from _common import big_file, crc, run


def test_missing_file_exits_1(tmp_path):
    r = run(tmp_path / "nope")
    assert (r.returncode, r.stderr) == (1, f"crcsum: {tmp_path}/nope: No such file or directory\n".encode())


def test_unknown_option_exits_2():
    r = run("-z")
    assert r.returncode == 2
    assert r.stderr.startswith(b"crcsum: unknown option '-z'\nUsage: crcsum")


def test_version_and_help():
    assert run("--version").stdout == b"crcsum 2.1.0\n"
    assert run("-h").stdout.startswith(b"Usage: crcsum [-x] [-q] [FILE...]")


def test_large_file(tmp_path):
    data = big_file(tmp_path / "big.bin")
    assert run("-x", tmp_path / "big.bin").stdout == b"%08x %d %s\n" % (crc(data), len(data), os.fsencode(tmp_path / "big.bin"))
