"""Grid-intensity and facility factor inputs: codecarbon's shipped data, provider CSV exports,
and the Electricity Maps API client. Parsing only; writes go through accounting.services.factors."""
