"""Ship, ramp or un-ship an experiment's variant from the command line (the admin
action's and the API's CLI face; a cron line or a deploy script can run a ramp)."""

from django.core.management.base import BaseCommand, CommandError

from personalization import services
from personalization.engine.rollout import rollout_percent_parse
from personalization.models import Experiment


class Command(BaseCommand):
    help = (
        "Ship a variant (--variant, optionally to --rollout percent of the targeted users), "
        "change the rollout percentage of the shipped variant (--rollout alone), or roll "
        "the ship back (--unship). --ramp-step P --ramp-every H with --variant schedules a "
        "ramp: +P percent every H hours until 100 (run by beat)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("key", help="the experiment's key")
        parser.add_argument("--variant", help="the variant to ship")
        parser.add_argument("--rollout", help="percentage of the targeted users, 0-100")
        parser.add_argument("--ramp-step", help="scheduled ramp: percentage points per step")
        parser.add_argument("--ramp-every", help="scheduled ramp: hours between steps")
        parser.add_argument("--unship", action="store_true", help="roll the ship back")
        parser.add_argument("--by", default="cli", help="recorded as who did it")

    def handle(
        self,
        *args,
        key: str,
        variant: str | None,
        rollout: str | None,
        ramp_step: str | None,
        ramp_every: str | None,
        unship: bool,
        by: str,
        **options,
    ) -> None:
        if unship and (variant or rollout is not None):
            raise CommandError("--unship takes neither --variant nor --rollout")
        if (ramp_step is not None or ramp_every is not None) and not variant:
            raise CommandError("--ramp-step and --ramp-every go with --variant (a ship)")
        ramp = {}
        for field, text in (("ramp_step_percent", ramp_step), ("ramp_every_hours", ramp_every)):
            if text is not None:
                try:
                    ramp[field] = float(text)
                except ValueError:
                    raise CommandError(f"{field}: must be a number (got {text!r})") from None
        if not (unship or variant or rollout is not None):
            raise CommandError("say what to do: --variant, --rollout or --unship")
        percent = None
        if rollout is not None:
            percent, error = rollout_percent_parse(rollout)
            if error:
                raise CommandError(f"rollout_percent: {error}")
        experiment = Experiment.objects.filter(key=key).first()
        if experiment is None:
            raise CommandError(f"no experiment with key {key!r}")
        try:
            if unship:
                exp = services.experiment_unship(experiment_id=experiment.pk, by=by)
            elif variant:
                exp = services.experiment_ship(
                    experiment_id=experiment.pk,
                    variant=variant,
                    rollout_percent=percent,
                    by=by,
                    **ramp,
                )
            else:
                exp = services.experiment_rollout_set(
                    experiment_id=experiment.pk, rollout_percent=percent, by=by
                )
        except services.ExperimentStateError as exc:
            raise CommandError(f"{exc.field}: {exc}") from exc
        if exp.shipped_variant:
            message = f"{exp.key}: {exp.shipped_variant} shipped to {exp.rollout_percent:g}%"
            if exp.rollout_step_percent:
                message += (
                    f", +{exp.rollout_step_percent:g}% every {exp.rollout_step_hours:g} h "
                    f"(next {exp.rollout_next_step_at:%Y-%m-%d %H:%M} UTC)"
                )
        else:
            message = f"{exp.key}: nothing shipped"
        self.stdout.write(self.style.SUCCESS(message))
