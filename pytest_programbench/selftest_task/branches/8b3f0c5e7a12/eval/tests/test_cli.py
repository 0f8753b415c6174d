from _rpn import rpn


def test_version():
    r = rpn("--version")
    assert (r.returncode, r.stdout) == (0, "rpncalc 1.0.0\n")


def test_help_exits_zero():
    # Ignored in tests.json (dummy_pass): any program that exits 0 passes it.
    assert rpn("--help").returncode == 0
