from _common import run


def test_version():
    assert run("--version").stdout == b"tally 1.4.2\n"


def test_help_names_every_option():
    out = run("--help").stdout.decode()
    assert out.startswith("Usage: tally [OPTIONS] [FILE...]")
    for flag in ("--lines", "--words", "--bytes", "--top", "--ignore-case", "--min-length"):
        assert flag in out


def test_bad_option_exits_2():
    r = run("--frobnicate")
    assert r.returncode == 2
    assert r.stderr.decode().endswith("Try 'tally --help' for more information.\n")
