import os
import tempfile

from hypothesis import settings

# Tests never touch the network: pretrained weights are never downloaded, and
# torch's hub cache is an empty folder of the test run's own (tests that need
# weights put a file they made there, under torchvision's file name).
os.environ["CNNKIT_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="cnnkit-test-torch-home-")

# CI runs the property tests with a fixed sequence of examples, so a submission
# is judged on the code, not on the luck of the draw; locally they explore anew.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
