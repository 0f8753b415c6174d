"""What a session reports: results on the test report, the terminal, JSON, JUnit, HTML, packages."""
