"""Demonstration data: generation with the oracle (``datagen``) and reading for training (``dataset``).

Thin on purpose: import ``embodied.commands.datagen`` / ``embodied.data.dataset`` directly.
"""
