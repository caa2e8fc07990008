"""labkit: the course's reference implementations (core, lecture modules, experiments).

``EDITION`` is ``"full"`` here, where every graded function holds its reference; the student
edition (``make student``) sets it to ``"student"``, where the graded functions are stubs.
"""
EDITION = "full"
