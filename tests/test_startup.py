"""Heavy libraries load only where used: composing a config, planning and --help stay light."""

import subprocess
import sys

import pytest

from helpers.data import real_mirror

# Runs the command in this interpreter, prints which heavy libraries it loaded, then exits with the
# command's own exit status (SystemExit is caught only to print the list first).
PROBE = ("import sys, runpy; sys.argv = {argv!r}\n"
         "code = 0\n"
         "try:\n    runpy.run_module({module!r}, run_name='__main__')\n"
         "except SystemExit as exit_:\n    code = exit_.code\n"
         "print('HEAVY=' + ','.join(m for m in ('torch', 'vllm', 'mlflow', 'transformers') if m in sys.modules))\n"
         "sys.exit(code)")


@pytest.mark.parametrize("module,argv", [
    ("cogdistill", ["cogdistill", "--help"]),
    ("cogdistill", ["cogdistill", "--cfg", "job"]),
    ("cogdistill.report", ["cogdistill.report", "--help"]),
])
def test_no_heavy_import_before_work_starts(module, argv):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(module=module, argv=argv)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    heavy = [line for line in proc.stdout.splitlines() if line.startswith("HEAVY=")]
    assert heavy == ["HEAVY="], (heavy, proc.stderr[-2000:])


@pytest.mark.skipif(real_mirror() is None, reason="real human data mirror absent")
def test_planning_a_sweep_reads_data_but_loads_no_model_library(tmp_path):
    argv = ["cogdistill", "-m", "model=glob(r1-distill-*)", "engine=dry", f"data.mirror={real_mirror()}",
            f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(module="cogdistill", argv=argv)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "plan" in proc.stdout and "HEAVY=\n" in proc.stdout + "\n", proc.stdout[-2000:] + proc.stderr[-2000:]
