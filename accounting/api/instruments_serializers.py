"""Request and response shapes of the market-based Scope 2 and water factor endpoints
(``accounting.api.instruments_views``) and of the period disclosure. Units in field names:
MWh for contracts (as they are written), g/kWh for factors, L/kWh for water, kWh, g and L for
results."""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from accounting.api.serializers import (
    AwareDateTimeField,
    BasisSerializer,
    BoundedDateField,
    FiniteFloatField,
    StrictSerializer,
)
from accounting.models import ContractualInstrument, FactorSource, GasCoverage

# Text that must say something: a non-space character and no NUL (PostgreSQL text cannot hold
# one), stated as a pattern so the schema says what the trimmed value must hold.
_NOT_BLANK = RegexValidator(r"^[^\x00]*[^\s\x00][^\x00]*$", "Must not be blank or hold NUL characters.")


def _text(max_length: int, help_text: str = "") -> serializers.CharField:
    return serializers.CharField(max_length=max_length, validators=[_NOT_BLANK], help_text=help_text)


def _reason() -> serializers.CharField:
    return _text(500, "Why: kept in the audit trail with before/after values.")


class DeliverySerializer(StrictSerializer):
    hour = AwareDateTimeField(help_text="Start of a UTC hour inside the instrument's period.")
    mwh = FiniteFloatField(min_value=0, max_value=1e7)


class InstrumentCreateSerializer(StrictSerializer):
    site = serializers.SlugField(max_length=50, help_text="A site of this token's organisation.")
    kind = serializers.ChoiceField(choices=ContractualInstrument.Kind.values)
    period_start = AwareDateTimeField()
    period_end = AwareDateTimeField(help_text="Exclusive; after period_start.")
    mwh = FiniteFloatField(min_value=0, max_value=1e7, help_text="Energy the instrument covers (> 0).")
    g_per_kwh = FiniteFloatField(
        min_value=0, max_value=5000, help_text="Its emission factor (gCO2e/kWh; 0 for renewable attributes)."
    )
    certificate_ids = serializers.ListField(child=_text(200), required=False, max_length=100_000, default=list)
    registry = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    source = _text(300, "Contract or cancellation-statement reference.")  # type: ignore[assignment]  # type: ignore[assignment]
    deliveries = DeliverySerializer(  # type: ignore[call-arg]
        many=True,
        required=False,
        max_length=8784,
        help_text="Hourly deliveries summing to `mwh`: the instrument is then matched hour by hour.",
    )
    reason = _reason()


class InstrumentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    site = serializers.CharField(source="site.slug")
    kind = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    mwh = serializers.FloatField()
    g_per_kwh = serializers.FloatField()
    certificate_ids = serializers.ListField(child=serializers.CharField())
    registry = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    matching = serializers.SerializerMethodField(help_text="`hourly` with deliveries, else `annual` (its period).")
    delivery_hours = serializers.SerializerMethodField()
    version = serializers.IntegerField()

    def get_matching(self, obj) -> str:
        return "hourly" if self.get_delivery_hours(obj) else "annual"

    def get_delivery_hours(self, obj) -> int:
        return len(obj.deliveries.all())


class InstrumentDeleteQuerySerializer(serializers.Serializer):
    reason = _text(500, "Why it is withdrawn (audit trail).")


class ResidualMixSetSerializer(StrictSerializer):
    zone = serializers.CharField(max_length=64, help_text="A grid zone code that exists.")
    year = serializers.IntegerField(min_value=1990, max_value=2100)
    g_per_kwh = FiniteFloatField(min_value=0, max_value=5000)
    gases = serializers.ChoiceField(choices=GasCoverage.values, required=False, default=GasCoverage.CO2E)
    source = serializers.ChoiceField(choices=FactorSource.values, required=False, default=FactorSource.PUBLISHED)  # type: ignore[assignment]
    source_detail = _text(300, "Dataset and release (e.g. AIB 2024 v1.0).")
    vintage = serializers.CharField(max_length=40, required=False, default="", allow_blank=True)
    reason = _reason()


class ResidualMixSerializer(serializers.Serializer):
    zone = serializers.CharField(source="zone.code")
    year = serializers.IntegerField()
    g_per_kwh = serializers.FloatField()
    gases = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    source_detail = serializers.CharField()
    vintage = serializers.CharField()
    version = serializers.IntegerField()


class ZoneWaterSetSerializer(StrictSerializer):
    zone = serializers.CharField(max_length=64, help_text="A grid zone code that exists.")
    l_per_kwh = FiniteFloatField(min_value=0, max_value=100, help_text="Litres consumed per kWh generated.")
    low_l_per_kwh = FiniteFloatField(min_value=0, max_value=100)
    high_l_per_kwh = FiniteFloatField(min_value=0, max_value=100, help_text="low <= central <= high.")
    source = serializers.ChoiceField(choices=FactorSource.values, required=False, default=FactorSource.PUBLISHED)  # type: ignore[assignment]
    source_detail = _text(500, "Dataset, e.g. a generation mix x Macknick et al. 2012.")
    vintage = serializers.CharField(max_length=40, required=False, default="", allow_blank=True)
    reason = _reason()


class ZoneWaterSerializer(serializers.Serializer):
    zone = serializers.CharField(source="zone.code")
    l_per_kwh = serializers.FloatField()
    low_l_per_kwh = serializers.FloatField()
    high_l_per_kwh = serializers.FloatField()
    source = serializers.CharField()  # type: ignore[assignment]
    source_detail = serializers.CharField()
    vintage = serializers.CharField()
    version = serializers.IntegerField()


class DisclosureQuerySerializer(serializers.Serializer):
    start = BoundedDateField(help_text="First UTC day of the period.")
    end = BoundedDateField(help_text="Exclusive; after start, at most 366 days later.")
    team = serializers.SlugField(required=False, help_text="Only this team: a team the token sees.")


class MarketSerializer(serializers.Serializer):
    co2e_g = serializers.FloatField()
    matching = serializers.CharField(help_text="`hourly`, `annual`, `hourly + annual` or `none` (residual mix only).")
    covered_kwh = serializers.FloatField()
    residual_kwh = serializers.FloatField()
    residual_sources = serializers.ListField(child=serializers.CharField())
    method_version = serializers.CharField()


class WaterSerializer(serializers.Serializer):
    onsite_l = serializers.FloatField()
    offsite_l = serializers.FloatField()
    total_l = serializers.FloatField()
    low_l = serializers.FloatField()
    high_l = serializers.FloatField()
    sites_without_wue = serializers.ListField(child=serializers.CharField())
    zones_without_water = serializers.ListField(child=serializers.CharField())
    it_kwh_without_wue = serializers.FloatField(help_text="IT energy of hours before a site's first WUE: not counted.")
    method_version = serializers.CharField()


class DisclosureSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    team = serializers.SerializerMethodField()
    energy_kwh = serializers.FloatField()
    location_based_g = serializers.FloatField(help_text="Scope 2 location-based (ledger operational carbon).")
    location_basis = BasisSerializer()
    market_based = MarketSerializer(source="market")
    upstream_g = serializers.FloatField(help_text="Scope 3 cat. 3: life-cycle minus direct, where both are known.")
    embodied_g = serializers.FloatField()
    water = WaterSerializer()
    labels = serializers.DictField(child=serializers.CharField())

    def get_team(self, obj) -> str | None:
        return self.context.get("team")


class InstrumentListSerializer(serializers.Serializer):
    results = InstrumentSerializer(many=True)


class ResidualMixListSerializer(serializers.Serializer):
    results = ResidualMixSerializer(many=True)


class ZoneWaterListSerializer(serializers.Serializer):
    results = ZoneWaterSerializer(many=True)


class SiteWueSetSerializer(StrictSerializer):
    site = serializers.SlugField(max_length=50, help_text="A site of this token's organisation.")
    valid_from = AwareDateTimeField(help_text="From this instant until the site's next WUE row.")
    wue_l_per_kwh = FiniteFloatField(min_value=0, max_value=100, help_text="Litres of site water per kWh of IT energy.")
    source = _text(300, "Meter, utility bill or operator estimate.")  # type: ignore[assignment]
    reason = _reason()


class SiteWueSerializer(serializers.Serializer):
    site = serializers.CharField(source="site.slug")
    valid_from = serializers.DateTimeField()
    wue_l_per_kwh = serializers.FloatField()
    source = serializers.CharField()  # type: ignore[assignment]
    version = serializers.IntegerField()


class SiteWueListSerializer(serializers.Serializer):
    results = SiteWueSerializer(many=True)
