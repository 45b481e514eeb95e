"""Shared logic of the 1-shot summarization tasks (CNN/DailyMail and XSum), following the paper's notebooks.

Prompt (paper, `evaluate_sum.ipynb` + `decoding.clip_input`): each shot is
`"Article: " + document + "\\nSummary: " + summary.replace("\\n", "") + "\\n"` and the query is
`shots + "Article: " + document + "\\nSummary:"`. The prediction is the completion cut at the first
`"\\nArticle:"`, then stripped (the notebook cuts only when the match is after position 0 and does not
strip; stripping cannot change ROUGE). The runner cuts over-long prompts with `truncate_middle`. Metric:
ROUGE F1 with the stemmer (`tasks.rouge`): ROUGE-2 (main), ROUGE-1 and ROUGE-L, mean over samples with a
bootstrap interval.

Paper-compatible scoring (`paper_postprocess`, on by default): also scored as the notebook scores, on the
completion without its first generated token (the notebook decodes `generate_ids[0, input_ids.size(0):]`,
size(0) being the batch size 1), cut at `"\\nArticle:"` only after position 0; metrics.json
`paper_compatible`, beside the faithful score, which it never replaces. Departure from the paper's code: no
silent skip of short baseline outputs (`min_baseline_chars_filter`, off by default; when set, every
statistic is over the kept samples and metrics.json lists `excluded_ids`).

Two sources (`source`: auto | hub | offline; auto means hub unless HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is
set):
- hub: the paper's selection, `load_dataset(...).shuffle(seed=42).select(range(1000))` of the test split;
  the shots are the first `shots` items of the train split after `.shuffle(seed=42)`. Dev prompts for the
  layer search follow `search.ipynb`: train split shuffled with seed 4242, query i = item i, its shot =
  item i + 100, never an evaluation shot.
- offline: real test items from `data_dir()` (the files shipped in `tasks/data/`), in file order. There is
  no train split offline, so the last `offline.held_out_items` items of the file are held out and never
  scored: the last `shots` of them are the shots, the others are the dev prompts' queries (dev prompts reuse
  the evaluation shot).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from replicate.schema import ConfigError
from tasks.articles import Article, DataFileError, DataUnavailableError, format_query, read_articles
from tasks.base import SHIPPED_DATA_DIR, Sample, Task, data_dir
from tasks.rouge import RougeF1, summarize_metric
from tasks.selection import check_selection

_TRUE = {"1", "true", "yes", "on"}
__all__ = ["Article", "DataFileError", "DataUnavailableError", "SummarizationTask", "hub_is_offline"]


def hub_is_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


class SummarizationTask(Task):
    """A 1-shot summarization benchmark; subclasses only set `name` and `title`."""

    title = "summarization"

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg["source"] not in ("auto", "hub", "offline"):
            raise ConfigError(f"{self.name}: source must be auto, hub or offline, got {cfg['source']!r}")
        self.source = (
            "offline"
            if cfg["source"] == "offline" or (cfg["source"] == "auto" and hub_is_offline())
            else "hub"
        )
        self._rouge = RougeF1(cfg["rouge"]["types"], cfg["rouge"]["use_stemmer"])
        self._record: dict[str, Any] = {"task": self.name, "source": self.source}
        self._evaluation: list[Article] | None = None
        self._shots: list[Article] = []
        self._dev_offline: list[Article] = []

    # ---------------------------------------------------------------- loading

    def _load(self) -> list[Article]:
        if self._evaluation is None:
            self._evaluation = self._load_hub() if self.source == "hub" else self._load_offline()
        return self._evaluation

    def _hub_split(self, split: str, shuffle_seed: int):
        from datasets import load_dataset

        hub = self.cfg["hub"]
        try:
            dataset = load_dataset(hub["path"], hub["config"], split=split, revision=hub["revision"])
        except (ConnectionError, OSError) as error:
            raise DataUnavailableError(
                f"{self.title}: could not load {hub['path']} ({split}, revision {hub['revision']}) from the hub: "
                f"{error}. Without hub access set HF_DATASETS_OFFLINE=1 (or task.source=offline) to use the "
                f"offline items in {self.offline_path()}."
            ) from error
        return dataset.shuffle(seed=shuffle_seed)

    def _hub_article(self, row: dict[str, Any]) -> Article:
        hub = self.cfg["hub"]
        return Article(str(row[hub["id_field"]]), row[hub["document_field"]], row[hub["summary_field"]])

    def _load_hub(self) -> list[Article]:
        hub, seed = self.cfg["hub"], self.cfg["shuffle_seed"]
        test = self._hub_split(hub["test_split"], seed)
        size = min(self.cfg["selection_size"], len(test))
        evaluation = [self._hub_article(row) for row in test.select(range(size))]
        selected = [{"id": item.id, "summary": item.summary} for item in evaluation]
        self._record["selection_check"] = check_selection(selected, self.cfg["selection_check"], self.title)
        train = self._hub_split(hub["train_split"], seed)
        self._shots = [self._hub_article(row) for row in train.select(range(self.cfg["shots"]))]
        self._record.update(
            dataset=hub["path"],
            dataset_config=hub["config"],
            revision=hub["revision"],
            resolved_revision=_resolve_hub_revision(hub["path"], hub["revision"]),
            split=hub["test_split"],
            shuffle_seed=seed,
            selection=f".shuffle(seed={seed}).select(range({size}))",
        )
        return evaluation

    def offline_path(self) -> Path:
        return data_dir() / self.cfg["offline"]["file"]

    def _load_offline(self) -> list[Article]:
        offline, path = self.cfg["offline"], self.offline_path()
        if not path.is_file():
            variable = os.environ.get("REPLICATE_DATA_DIR")
            if variable:
                fix = (
                    f"$REPLICATE_DATA_DIR={variable} overrides the shipped data: point it at a directory "
                    f"containing {offline['file']}, or unset it to use the files shipped in "
                    f"{SHIPPED_DATA_DIR}"
                )
            else:
                fix = (
                    f"the shipped data directory {SHIPPED_DATA_DIR} lacks it (an incomplete checkout or "
                    f"install? reinstall the project, or check task.offline.file={offline['file']!r}); "
                    f"or set REPLICATE_DATA_DIR to a directory containing {offline['file']}"
                )
            raise DataUnavailableError(
                f"{self.title} offline data not found: looked for {path}. Fix: {fix}; "
                f"or allow hub access (unset HF_DATASETS_OFFLINE and HF_HUB_OFFLINE, task.source=auto or hub)."
            )
        items, digest = read_articles(path, offline, self.name)
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids) or "None" in ids:
            raise ConfigError(f"{path}: offline.id_field={offline['id_field']!r} is missing or not unique")
        held, shots = offline["held_out_items"], self.cfg["shots"]
        if held < shots or held >= len(items):
            raise ConfigError(
                f"{self.title}: offline.held_out_items={held} must be >= shots={shots} and < {len(items)} items"
            )
        evaluation, held_out = items[: len(items) - held], items[len(items) - held :]
        self._shots = held_out[len(held_out) - shots :] if shots else []
        self._dev_offline = held_out[: len(held_out) - shots]
        self._record.update(
            file=str(path),
            file_sha256=digest,
            items_in_file=len(items),
            held_out_ids=[item.id for item in held_out],
            revision=None,
            note="offline: held-out items of the same file serve as shots and dev prompts; none is scored",
        )
        return evaluation

    # ---------------------------------------------------------------- Task interface

    def samples(self, n: int | None = None) -> list[Sample]:
        evaluation = self._load()
        if n is not None and n > len(evaluation):
            raise ConfigError(
                f"{self.title}: {n} samples requested but the {self.source} selection has {len(evaluation)} "
                f"(offline files are small; lower n_samples or allow hub access)"
            )
        chosen = evaluation if n is None else evaluation[:n]
        samples = [
            Sample(
                id=item.id,
                prompt=format_query(self._shots, item),
                reference=item.summary,
                meta={"position": i},
            )
            for i, item in enumerate(chosen)
        ]
        self._record.update(
            n_available=len(evaluation),
            sample_ids=[sample.id for sample in samples],
            shot_ids=[shot.id for shot in self._shots],
        )
        return samples

    def dev_prompts(self, n: int) -> list[str]:
        self._load()
        if self.source == "offline":
            if n > len(self._dev_offline):
                raise ConfigError(
                    f"{self.title}: {n} dev prompts requested but only {len(self._dev_offline)} held-out items "
                    f"exist offline (raise offline.held_out_items, which removes evaluation items)"
                )
            dev = self._dev_offline[:n]
            self._record["dev_ids"] = [item.id for item in dev]
            return [format_query(self._shots, item) for item in dev]
        return self._hub_dev_prompts(n)

    def _hub_dev_prompts(self, n: int) -> list[str]:
        dev_cfg, shots = self.cfg["dev"], self.cfg["shots"]
        offset = dev_cfg["shot_offset"]
        if n > offset:
            raise ConfigError(
                f"{self.title}: at most dev.shot_offset={offset} dev prompts (queries precede shots)"
            )
        train = self._hub_split(self.cfg["hub"]["train_split"], dev_cfg["shuffle_seed"])
        excluded = {shot.id for shot in self._shots}  # never reuse an evaluation shot
        head = train.select(range(min(len(train), offset + n * shots + len(excluded))))
        pool = [article for article in map(self._hub_article, head) if article.id not in excluded]
        queries = pool[:n]
        prompts = [
            format_query(pool[offset + i * shots : offset + (i + 1) * shots], query)
            for i, query in enumerate(queries)
        ]
        self._record["dev_ids"] = [query.id for query in queries]
        self._record["dev_selection"] = (
            f"{self.cfg['hub']['train_split']}.shuffle(seed={dev_cfg['shuffle_seed']}): queries 0..{n - 1}, "
            f"shots from position {offset}"
        )
        return prompts

    def postprocess(self, completion: str, sample: Sample) -> str:
        # The notebook cuts only when the stop string is found after position 0 (`find(...) > 0`); we also cut
        # at position 0, so a completion that opens a new article scores as an empty summary.
        cut = completion.find(self.cfg["stop_sequence"])
        return (completion if cut < 0 else completion[:cut]).strip()

    def paper_prediction(self, completion_after_first_token: str, sample: Sample) -> str:
        # evaluate_sum.ipynb: cut at the stop string only when it is found after position 0, no strip.
        cut = completion_after_first_token.find(self.cfg["stop_sequence"])
        return completion_after_first_token[:cut] if cut > 0 else completion_after_first_token

    def score_sample(self, sample: Sample, prediction: str) -> dict[str, float]:
        return self._rouge(sample.reference or "", prediction)

    def aggregate(self, samples: list[Sample], scores: list[dict[str, float]]) -> dict[str, Any]:
        if len(samples) != len(scores):
            raise ValueError(f"{len(samples)} samples but {len(scores)} scores")
        bootstrap = self.cfg["bootstrap"]
        per_metric = {
            name: summarize_metric([score[name] for score in scores], bootstrap)
            for name in self._rouge.rouge_types
        }
        main = per_metric[self.cfg["metric"]]
        return {
            "metric": self.cfg["metric"],
            "score": main["mean"],
            "ci_low": main["ci_low"],
            "ci_high": main["ci_high"],
            "n": len(scores),
            "per_metric": per_metric,
            "bootstrap": dict(bootstrap),
        }

    def selection(self) -> dict[str, Any]:
        self._load()
        return dict(self._record)


def _resolve_hub_revision(path: str, revision: str) -> str | None:
    """The commit the configured revision points to now, so a branch name still records a fixed commit."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(path, revision=revision).sha
    except Exception as error:  # the run record says why instead of failing the run
        return f"unresolved ({type(error).__name__})"
