"""Score CSV files of `timestamp,value` with the anomaly engine (NAB layout output)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from anomalies.engine.csv_runner import CsvInputError, CsvOutputError, run_csv_files


class Command(BaseCommand):
    help = "Write DIR/<parent folder>/<file name> with timestamp,value,anomaly_score per input."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--out-dir", type=Path, required=True)

    def handle(self, *args, files: list[Path], out_dir: Path, **options):
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        try:
            written = run_csv_files(files, out_dir)
        except (CsvInputError, CsvOutputError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"scored {len(written)} files into {out_dir}")
