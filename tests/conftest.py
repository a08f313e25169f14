import os

# pytest-qt aborts the whole run on a machine without a display unless Qt renders offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
