from _rpn import value


def test_hex_output():
    assert value("--hex", "255", "1", "+") == "0x100"


def test_hex_literal():
    assert value("0x10", "1", "+") == "17"
