from _rpn import rpn, value


def test_dup_swap_drop():
    assert value("3", "dup", "x") == "9"
    assert value("1", "2", "swap", "-") == "1"
    assert value("1", "2", "drop") == "1"


def test_neg_abs():
    assert value("5", "neg") == "-5"
    assert value("-5", "abs") == "5"


def test_sum():
    assert value("1", "2", "3", "4", "sum") == "10"
    assert value("sum") == "0"


def test_stack_flag():
    assert value("-s", "1", "2", "3") == "1 2 3"
    assert value("--stack", "4", "dup") == "4 4"


def test_stdin_lines():
    r = rpn(stdin="1 2 +\n\n# a comment\n3 4 x   # trailing comment\n\t10 2 /\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "3\n12\n5\n"
