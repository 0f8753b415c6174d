from _rpn import rpn


def test_division_by_zero():
    r = rpn("1", "0", "/")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "rpncalc: division by zero\n")


def test_stack_underflow():
    r = rpn("1", "+")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "rpncalc: stack underflow\n")


def test_unknown_token():
    r = rpn("1", "foo")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "rpncalc: unknown token 'foo'\n")


def test_error_line_number_on_stdin():
    r = rpn(stdin="1 2 +\n1 0 /\n5\n")
    assert (r.returncode, r.stdout, r.stderr) == (2, "3\n", "rpncalc: line 2: division by zero\n")
