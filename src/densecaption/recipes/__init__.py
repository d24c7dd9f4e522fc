"""Recipes: a paper table's experiment as one YAML file of ``densecaption`` commands, run by ``densecaption run``.

- :mod:`densecaption.recipes.schema`: the recipe as frozen dataclasses, YAML loading and structural checks;
- :mod:`densecaption.recipes.commands`: the command tree the steps name, option rendering and checking;
- :mod:`densecaption.recipes.plan`: substitution, ``foreach``, ordering by data, fingerprints, hashes, status;
- :mod:`densecaption.recipes.runner`: running the pending steps in this process, stamps, logs, reports;
- :mod:`densecaption.recipes.catalog`: the recipes shipped in ``recipes/shipped/`` (``densecaption ls recipes``).

See ``docs/recipes.md`` for the format and the run-folder layout.
"""
