"""The data gates: Great Expectations suites over the corpus (corpus_suite.py) and the prepared tokens
(token_suite.py), on the shared mechanics of expectations.py. Each writes its JSON report and Data Docs
under reports/validation/<suite>/ and raises `ValidationFailed` naming every failed check."""
