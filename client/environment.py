"""The prefix of every variable meltano-forge reads from its environment, in a module of its
own so that a command can name one without loading the settings model."""

ENV_PREFIX = "MELTANO_FORGE_"
