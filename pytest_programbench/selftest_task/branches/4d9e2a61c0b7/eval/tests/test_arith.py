from _rpn import rpn, value


def test_add():
    assert value("2", "3", "+") == "5"
    assert value("-4", "4", "+") == "0"


def test_sub():
    assert value("10", "3", "-") == "7"
    assert value("3", "10", "-") == "-7"


def test_mul():
    assert value("4", "5", "*") == "20"
    assert value("-6", "7", "x") == "-42"


def test_div_truncates_toward_zero():
    assert value("7", "2", "/") == "3"
    assert value("-7", "2", "/") == "-3"


def test_mod_sign_follows_dividend():
    assert value("17", "5", "%") == "2"
    assert value("-7", "2", "%") == "-1"


def test_pow():
    assert value("2", "10", "^") == "1024"
    assert value("0", "0", "^") == "1"


def test_chain():
    assert value("1", "2", "+", "4", "x", "5", "-") == "7"
    assert value("5", "1", "2", "+", "4", "*", "+", "3", "-") == "14"


def test_overflow_is_an_error():
    r = rpn("9223372036854775807", "1", "+")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == "rpncalc: integer overflow\n"


def test_true_division():
    # Ignored in tests.json (gold_fail): the reference is integer-only.
    assert value("7", "2", "/") == "3.5"
