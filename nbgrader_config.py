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
# The gradebook: SQLite in grading/ for one instructor on one machine; PostgreSQL (or any SQLAlchemy
# URL) for several graders or machines, from MLSEC_GRADEBOOK_URL, e.g.
# postgresql://user@127.0.0.1:5432/gradebook. `make grade` and formgrader read it alike.
c.CourseDirectory.db_url = (os.environ.get("MLSEC_GRADEBOOK_URL", "").strip()
                            or "sqlite:///" + os.path.join(HERE, "grading", "gradebook.db"))
# hidden_checks.py (a lab's hidden checks, coursetools/checks.py) stays in solutions/<lab>/: nbgrader
# copies it into no release and no autograded folder, so no student process ever holds its text.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*", "hidden_checks.py"]

# The exchange: where `nbgrader release_assignment` puts a lab for students to fetch, and where
# their `submit` lands for `collect` (formgrader's Release and Collect buttons). nbgrader requires
# the folder to exist. On one machine it is grading/exchange, created here; on a JupyterHub, set
# MLSEC_EXCHANGE to the shared folder every user can write (nbgrader's docs: /srv/nbgrader/exchange,
# made with `mkdir -p` and `chmod ugo+rw`), in the instructor's and the students' environment alike.
c.Exchange.root = os.environ.get("MLSEC_EXCHANGE") or os.path.join(HERE, "grading", "exchange")
if not os.environ.get("MLSEC_EXCHANGE"):
    os.makedirs(c.Exchange.root, exist_ok=True)
# Collect takes a hand-in only when its folder and files are owned by the student it names (the
# system user of that name; where there is none, the instructor running collect), with no link or
# device in it, and copies only <lab>.ipynb (coursetools/exchange.py, coursetools/intake.py).
c.ExchangeFactory.collect = "coursetools.exchange.OwnerCheckedCollect"

# Only notebooks are graded: wherever a hand-in enters (grading/submitted/ for mlsec-grade, an LMS
# download for mlsec-collect, the exchange), only a regular file <lab>.ipynb (no link, one hard link)
# of at most this many bytes is taken; the rest is refused and listed (coursetools/intake.py).
c.Intake.max_notebook_bytes = 32 * 2**20

# Student code is untrusted: every kernel nbgrader starts to execute a notebook (autograde, and
# validate here in the instructor's repository) runs in a bubblewrap sandbox that hides the course
# root (solutions/, grading/, other submissions), has no network and writes only a scratch tmpfs
# (coursetools/sandbox.py). MLSEC_SANDBOX=off (`make grade SANDBOX=off`) is the explicit opt-out.
c.Execute.kernel_manager_class = "coursetools.sandbox.SandboxKernelManager"

# The limits of every sandboxed kernel (coursetools/sandbox.py; 0 turns one off). A hand-in that
# hits one gets 0 on what did not finish and a line saying which limit in its feedback; the batch
# goes on. Memory is RLIMIT_DATA per process (heap and private writable mappings), processes
# count threads too, CPU time is per process; /tmp and /dev/shm are tmpfs folders in memory.
c.SandboxKernelManager.memory_limit = 4 * 2**30       # bytes
c.SandboxKernelManager.process_limit = 256            # processes and threads
c.SandboxKernelManager.cpu_time_limit = 3600          # CPU seconds
c.SandboxKernelManager.file_size_limit = 2**30        # bytes of one file
c.SandboxKernelManager.tmp_size = 2**30               # bytes of /tmp
c.SandboxKernelManager.shm_size = 256 * 2**20         # bytes of /dev/shm
# Output a hand-in's kernel sends back, counted in bytes: what passes these is dropped, with a note.
c.SandboxExecute.max_cell_output_bytes = 16 * 2**20
c.SandboxExecute.max_notebook_output_bytes = 64 * 2**20

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Per-cell execution limit of `nbgrader autograde` (and validate). nbgrader's own Execute
# preprocessor declares `timeout` (default 30 s), so it is set on that class; a cell that runs
# longer is interrupted, shows CellTimeoutError, and the following cells still run.
# The slowest cell of a lab must fit (a whole lab executes in <= 240 s). Override per call with
# `--Execute.timeout=SECONDS`.
c.Execute.timeout = 300

# Feedback HTML must not reveal hidden tests: GetGrades (nbgrader's default), then our
# HideHiddenTests (coursetools/nbgrader_feedback.py: drops the hidden region and the tracebacks
# that quote it), then the default CSS. coursetools is installed with the project (`-e .` in
# requirements.txt), so nbgrader imports the preprocessor by its module path.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "coursetools.nbgrader_feedback.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# No script from a hand-in runs for the instructor (coursetools/sanitize.py). Formgrader's
# manual-grading view and the feedback are nbconvert HTMLExporter renderings of the autograded
# notebook, in the instructor's Jupyter origin; nbconvert does not sanitize by default, and its own
# `sanitize_html` leaves the markdown of nbgrader's formgrade and feedback templates raw (and shows
# the tags of honest HTML, such as pandas' tables, as text). SanitizeForHTML runs at every such
# rendering, feedback included (GenerateFeedback's exporter is an HTMLExporter): outputs reduced to
# safe mimetypes, HTML and SVG rebuilt from an allowlist, the student's markdown shown as its
# sanitized rendering. SanitizeHandIn (below, in autograde) cleans the stored notebook the same way.
c.HTMLExporter.preprocessors = ["coursetools.sanitize.SanitizeForHTML"]
# Formgrader's pages: a strict Content-Security-Policy on the manual-grading page, a sandbox for a
# submission's files, and no HTML or quote in formgrader's path parameters
# (coursetools/formgrader_guard.py). This patches formgrader's handlers where they are loaded (the
# Jupyter server reads this file when it loads formgrader); elsewhere it does nothing.
import coursetools.formgrader_guard  # noqa: E402

coursetools.formgrader_guard.install()

# A submission can change how its own kernel runs the cells that follow it (one IPython input
# transformer turns every hidden test into `pass`, which nbgrader would count as passed). Every
# autograded cell therefore carries a token for this run that it must display at its end
# (coursetools/integrity.py: ArmTestCells before Execute, CheckTestCells right after it); a cell
# that ends without an error and without its token scores 0. SanitizeHandIn (coursetools/sanitize.py)
# then takes what could run script in a browser out of the outputs and of the student's markdown.
# The rest is nbgrader's default list.
c.Autograde.autograde_preprocessors = [
    "coursetools.integrity.ArmTestCells",
    "coursetools.sandbox.SandboxExecute",  # nbgrader's Execute, with output caps and dead kernels scored
    "coursetools.integrity.CheckTestCells",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "coursetools.sanitize.SanitizeHandIn",  # after the scores: scripts, unsafe HTML and SVG out of what is stored
    "nbgrader.preprocessors.CheckCellMetadata",
]
