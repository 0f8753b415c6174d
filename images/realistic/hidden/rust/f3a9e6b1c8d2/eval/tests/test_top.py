from _common import big_text, run, top

TEXT = "The cat, the dog; the CAT. A dog's day: naïve cats!\n".encode()


def test_top_words():
    r = run("--top", 3, stdin=TEXT)
    assert (r.returncode, r.stdout) == (0, top(TEXT, 3))


def test_top_ignoring_case():
    assert run("-t", 2, "-i", stdin=TEXT).stdout == b"3 the\n2 cat\n"


def test_top_with_a_minimum_length():
    assert run("-t", 10, "-m", 4, stdin=TEXT).stdout == top(TEXT, 10, min_length=4)


def test_top_of_a_large_file(tmp_path):
    data = big_text(tmp_path / "big.txt", seed=11)
    assert run("--top", 5, "-i", tmp_path / "big.txt").stdout == top(data, 5, ignore_case=True)
