"""Example models for vramsim's exporter (LLaMA-shaped decoders)."""
