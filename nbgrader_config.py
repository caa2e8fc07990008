"""nbgrader configuration: the repository root is the course root.

solutions/ (the source notebooks) -> labs/ (the released student notebooks, committed)
grading/submitted/<student>/<lab>/ -> grading/autograded/ -> grading/feedback/
"""
import os

c = get_config()  # noqa: F821 - provided by nbgrader

HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = HERE
c.CourseDirectory.course_id = "mlsec"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = os.path.join("grading", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grading", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grading", "feedback")
# grading/ is git-ignored: create it so that the gradebook can be opened in a fresh clone.
os.makedirs(os.path.join(HERE, "grading"), exist_ok=True)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "grading", "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# The exchange (used by `nbgrader release_assignment` / `collect`) lives in a writable folder.
c.Exchange.root = os.path.join(HERE, "grading", "exchange")

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
