"""The local rehearsal world behind `deploywatch demo` and the tests."""
