"""fapiao-hub core: canonical model, tax rules, intake, channels, workflow, store."""
