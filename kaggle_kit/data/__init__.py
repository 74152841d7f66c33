"""Data tools: the data spec, `kit data inspect`, `kit data prepare`, `kit data synth`."""
