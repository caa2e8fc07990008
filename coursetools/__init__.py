"""The course's instructor tooling: grading pipeline, lab checks, feedback preprocessor, the book's offline-MathJax Sphinx extension."""
