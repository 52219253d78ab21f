"""Start-up cost: Django and the workers must not pay for Stan."""

from __future__ import annotations


def test_prophet_stays_off_the_django_start_up_path():
    """Loading the app's modules (as Django start-up and workers do) must not import Stan."""
    import subprocess
    import sys

    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'phase3.settings'; "
        "django.setup(); import forecasting.api, forecasting.admin, forecasting.tasks; "
        "sys.exit(1 if 'prophet' in sys.modules or 'cmdstanpy' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
