"""Studies: one-off experiments that drive the library (`replicate.search`, the runner) and write their
results under outputs/; each is a script of the checkout (not installed), run from the repository root:

    python -m studies.compare_searches <search run dirs>        # how several searches' choices compare
    python -m studies.estimate_check --num-sets 60 ...          # the teacher-forced estimate against decoding
    python -m studies.selection_experiment [--target cpu|gpu]   # every skip-set strategy on held-out items
    python -m studies.selection_report <results.json>           # that experiment's tables again
    python -m studies.humaneval_prompt_style --problems 20      # plain vs chat HumanEval prompts of a code model

Their findings are in docs/search.md (the prompt style: docs/code_models.md).
"""
