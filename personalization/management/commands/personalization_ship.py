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
        "the ship back (--unship)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("key", help="the experiment's key")
        parser.add_argument("--variant", help="the variant to ship")
        parser.add_argument("--rollout", help="percentage of the targeted users, 0-100")
        parser.add_argument("--unship", action="store_true", help="roll the ship back")
        parser.add_argument("--by", default="cli", help="recorded as who did it")

    def handle(
        self,
        *args,
        key: str,
        variant: str | None,
        rollout: str | None,
        unship: bool,
        by: str,
        **options,
    ) -> None:
        if unship and (variant or rollout is not None):
            raise CommandError("--unship takes neither --variant nor --rollout")
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
                    experiment_id=experiment.pk, variant=variant, rollout_percent=percent, by=by
                )
            else:
                exp = services.experiment_rollout_set(
                    experiment_id=experiment.pk, rollout_percent=percent, by=by
                )
        except services.ExperimentStateError as exc:
            raise CommandError(f"{exc.field}: {exc}") from exc
        if exp.shipped_variant:
            message = f"{exp.key}: {exp.shipped_variant} shipped to {exp.rollout_percent:g}%"
        else:
            message = f"{exp.key}: nothing shipped"
        self.stdout.write(self.style.SUCCESS(message))
