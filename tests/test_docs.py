"""README.md is a front page and docs/ holds a lesson and a records page per topic: generated blocks current, links
resolving, lessons short, every formula typeset.

The derivation documents (docs/derivations/) are compared with what each derivation now says in
tests/test_derivations.py, which runs them anyway.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from project import catalogue
from shared_specs import cli, docs, lessons, site, topics

ROOT = catalogue.ROOT


@pytest.fixture
def copy_of_docs(tmp_path):
    """README.md and docs/ copied into tmp_path, with the catalogue's forms still read from the checkout."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


def test_the_docs_are_current():
    assert docs.stale() == [], "run `make docs` (or `python -m shared_specs docs` for the tables alone)"


def test_every_topic_with_a_form_has_a_page_and_no_other_topic_has_one():
    pages = {p.stem for p in (ROOT / docs.TOPICS_DIR).glob("*.md")}
    assert pages == {t.name for t in docs.topics_with_pages()}
    assert len(pages) >= 18


def test_every_derivation_has_its_document():
    documents = {p.stem for p in (ROOT / docs.DERIVATIONS_DIR).glob("*.md")}
    assert documents == {t.name for t in catalogue.TOPICS if catalogue.has_derivation(t.name)}


def test_every_link_in_the_readme_and_docs_resolves():
    assert docs.broken_links(docs.doc_files(), ROOT) == []


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    assert "(docs/results.md)" in readme and "make site" in readme
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make demo" in first_screen and "make test" in first_screen
    for topic in docs.topics_with_pages():  # every topic one click away, and each of its forms
        assert f"[`{topic.name}`](docs/topics/{topic.name}.md)" in readme
        if catalogue.has_derivation(topic.name):
            assert f"[yes](theory_jax/derivations/{topic.name}.py)" in readme


def test_the_pages_speak_of_the_project_not_of_issues_or_sessions():
    pattern = re.compile(r"\bissues? \d+|\bsessions?\b|\bthis task\b|\bhelpers? (ran|were|was|editing)\b"
                         r"|\bsub-?agents?\b|no device was lent", re.I)
    found = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f in docs.doc_files()
             for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_every_results_row_is_complete_and_its_model_trains():
    rows = json.loads((ROOT / docs.RESULTS_FILE).read_text())
    trainable = {t.name for t in catalogue.TOPICS if t.trains}
    for row in rows:
        assert row["model"] in trainable
        assert isinstance(row["value"], (int, float)) and row["metric"] in row["metrics"]
        assert row["value"] == row["metrics"][row["metric"]]  # the figure is the run's, not typed
        assert row["machine"] and row["load"] and row["commit"] and row["steps"] > 0


# Negative controls: each kind of staleness is caught. -------------------------------------------------------------
def test_a_hand_edited_generated_table_is_caught(copy_of_docs):
    readme = copy_of_docs / "README.md"
    readme.write_text(readme.read_text().replace("| latent variable |", "| latent-variable |", 1))
    page = copy_of_docs / "docs/records/elbo.md"
    page.write_text(page.read_text().replace("</summary>", "</summary>\n\n0. *(numeric)* a typed claim", 1))
    assert set(docs.stale(copy_of_docs)) >= {"README.md is stale", "docs/records/elbo.md is stale"}


def test_a_spec_case_that_was_not_measured_is_caught(copy_of_docs):
    path = copy_of_docs / docs.SPECS_FILE
    specs = json.loads(path.read_text())
    specs["topics"]["vae"] = specs["topics"]["vae"][1:]
    path.write_text(json.dumps(specs))
    assert any("does not measure vae's cases" in line for line in docs.stale(copy_of_docs))


def test_a_missing_page_or_marker_is_caught(copy_of_docs, capsys, monkeypatch):
    (copy_of_docs / "docs/topics/vae.md").unlink()
    assert any("docs/topics/vae.md is missing" in line for line in docs.stale(copy_of_docs))
    page = copy_of_docs / "docs/records/elbo.md"
    page.write_text(page.read_text().replace("<!-- specs:end -->", ""))
    (copy_of_docs / "docs/topics/vae.md").write_text((ROOT / "docs/topics/vae.md").read_text())
    assert any("lacks the markers of its generated 'specs' block" in line for line in docs.stale(copy_of_docs))
    monkeypatch.setattr(catalogue, "ROOT", copy_of_docs)
    assert cli.main(["docs", "--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_a_broken_link_or_anchor_is_caught(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code` heading\n\n[ok](#some-code-heading) [self](a.md#title)"
                                   " ![pic](b.png) [web](https://example.org) `[not a](link)`\n")
    (tmp_path / "b.png").write_bytes(b"")
    assert docs.broken_links([tmp_path / "a.md"], tmp_path) == []
    (tmp_path / "a.md").write_text("[gone](missing.md) [bad](#no-heading) <a href=\"c.md\">c</a>\n")
    assert len(docs.broken_links([tmp_path / "a.md"], tmp_path)) == 3


def test_masking_keeps_the_words_and_drops_the_measurements():
    a = "**Claim 3** (numeric). KS p = 0.307\n> check: max |lhs - rhs| = 1.15e-14 (rtol 1e-10); passed"
    b = "**Claim 3** (numeric). KS p = 0.311\n> check: max |lhs - rhs| = 2.2e-15 (rtol 1e-10); passed"
    assert docs.masked(a) == docs.masked(b)
    assert docs.masked(a) != docs.masked(a.replace("passed", "**FAILED**"))
    assert docs.masked(a) != docs.masked(a.replace("KS", "Kolmogorov-Smirnov"))


def test_re_measuring_one_topic_keeps_the_others_and_their_machines(copy_of_docs, monkeypatch):
    path = copy_of_docs / docs.SPECS_FILE
    specs = json.loads(path.read_text())
    specs["environments"]["vae"] = {"cpu": "another machine"}
    specs["topics"]["elbo"] = [dict(r, ratio=0.999) for r in specs["topics"]["elbo"]]  # a marker that must go
    path.write_text(json.dumps(specs))
    assert docs.write_specs(copy_of_docs, echo=lambda *_: None, topics=["elbo"])
    after = json.loads(path.read_text())
    assert after["topics"]["vae"] == specs["topics"]["vae"] and after["environments"]["vae"] == {"cpu": "another machine"}
    assert after["environments"]["elbo"] != {"cpu": "another machine"}
    assert [r["case"] for r in after["topics"]["elbo"]] == [c.id for c in topics.spec_cases("elbo")]
    assert all(r["ratio"] != 0.999 for r in after["topics"]["elbo"])
    assert list(after["topics"]) == [t.name for t in catalogue.TOPICS if t.name in after["topics"]]
    with pytest.raises(ValueError, match="no topic named nope"):
        docs.build(copy_of_docs, topics=["nope"], echo=lambda *_: None)


def test_every_generated_table_has_as_many_columns_in_each_row_as_in_its_header():
    """A separator row one column short makes GitHub render the table as text."""
    for path, text in docs.rendered(ROOT).items():
        for block in re.findall(r"(?:^\|.*\|\n)+", text + "\n", re.M):
            widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block.strip().splitlines()}
            assert len(widths) == 1, f"{path}: a table with rows of {sorted(widths)} bars:\n{block[:300]}"


def test_the_front_page_shows_one_run_per_model_the_plain_preset_first():
    """``front_rows``: a model's newest plain-preset run (bookkeeping changes allowed) on the first data set it has
    one on; a model with only changed settings shows its newest run; the count of all its runs comes along."""
    def row(model, dataset, *changes):
        return {"model": model, "dataset": dataset, "changes": list(changes)}

    rows = [row("gan", "fashion_mnist", "model.conditional=True"), row("gan", "fashion_mnist", "train.threads=1"),
            row("gan", "gaussians"), row("gan", "fashion_mnist"), row("wgan", "mixture1d", "model.gp_weight=100"),
            row("wgan", "mixture1d", "train.steps=3000")]
    front = {r["model"]: r for r in docs.front_rows(rows)}
    assert front["gan"] == {**rows[3], "runs": 4}
    assert front["wgan"] == {**rows[5], "runs": 2}
    # the control: a plain run on a later data set does not displace the first data set's
    assert docs.front_rows(rows[:3])[0] == {**rows[1], "runs": 3}
    # a control-task run (CartPole) is not a model's front row: its page lists it, the reproductions cover it
    cartpole = {**row("ppo", "cartpole"), "kind": "control"}
    assert "ppo" not in {r["model"] for r in docs.front_rows([*rows, cartpole])}


def test_the_gpu_table_extrapolates_a_gpu_timing_of_the_full_preset_and_nothing_else():
    """A recorded gpu_steps row on CUDA at the full preset's batch gives the training time: build + first step +
    steps x the step's time (ddpm: 2 + 28 s + 200 000 x 50 ms = 10 030 s = 167.2 min); the controls: a CPU row and a
    row at another batch leave their presets untimed; a step that failed on the GPU, or a preset skipped there, says
    so; a row
    timed with a changed preset says what changed. Rows merged from two runs name both commits, the second's models."""
    full = {p["model"]: p for p in docs.full_presets()}
    row = {"device": "cuda", "preset": "full", "note": "", "examples_per_s": 2560.0, "step_ms": 50.0, "mfu": 0.25,
           "gpu_busy": 0.93, "syncs_per_step": 0.0, "build_s": 2.0, "first_step_s": 28.0}
    recorded = {"meta": {"gpu": "NVIDIA H100 80GB HBM3", "commit": "abc1234", "load_before": 0.1},
                "rows": [{**row, "model": "ddpm", "batch": full["ddpm"]["batch"]},
                         {**row, "model": "vae", "batch": full["vae"]["batch"], "device": "cpu"},
                         {**row, "model": "pixelcnn", "batch": full["pixelcnn"]["batch"] + 1},
                         {**row, "model": "gan", "batch": full["gan"]["batch"], "note": "skipped: needs a run"},
                         {**row, "model": "guidance", "batch": full["guidance"]["batch"],
                          "set": "model.autoencoder_steps=200 train.compile=false data.data_dir=/tmp/x"},
                         {**row, "model": "wavenet", "batch": full["wavenet"]["batch"], "commit": "def5678",
                          "note": "failed: OutOfMemoryError: CUDA out of memory"}]}
    assert full["ddpm"]["steps"] == 200_000  # the arithmetic below
    lines = {line.split("`")[1]: line for line in docs.gpu_table(recorded).splitlines() if line.startswith("| [`")}
    assert set(lines) == set(full)
    assert "| 2,560 | 25.0% | 93% | 0 | 30 s | 167.2 min |" in lines["ddpm"]
    assert all("not timed on a GPU yet" in lines[m] for m in ("vae", "pixelcnn"))
    assert "| skipped: needs a run | | | | | |" in lines["gan"]
    assert "; timed with `train.compile=false` |" in lines["guidance"]  # what changed the step, not where data were
    assert "timed with" not in lines["ddpm"]
    assert "| failed: OutOfMemoryError: CUDA out of memory | | | | | |" in lines["wavenet"]  # said, not hidden
    assert "NVIDIA H100 80GB HBM3 at abc1234 (2 timed) (load" in docs.gpu_table(recorded)  # not the failed row's
    merged = {**recorded, "rows": [*recorded["rows"], {**row, "model": "vae", "batch": full["vae"]["batch"],
                                                       "commit": "def5678"}]}
    assert "at abc1234 (2 timed); NVIDIA H100 80GB HBM3 at def5678 (vae) (" in docs.gpu_table(merged)  # two runs
    assert "No GPU timing is recorded" in docs.gpu_table({})


# Reproductions and prose quotes ------------------------------------------------------------------------------------
def reproduction(values=(500.0, 500.0, 480.0), holds=(True, True, False)) -> dict:
    """A record of one row with one arm over len(values) seeds, as ``python -m benchmarks reproduce`` writes it."""
    row = {"title": "CartPole-v1", "topics": ["ppo", "trpo"], "paper": "the RL Zoo", "protocol": "quick presets",
           "paper_figure": "500 +- 0", "label": "greedy mean return", "target": "500 on every seed", "digits": 1,
           "arms": [{"name": "trpo", "model": "trpo", "dataset": "cartpole", "sets": []}]}
    meta = {"commit": "abc1234", "machine": "AMD EPYC, 2 cores", "jobs": 2, "load_before": 0.1, "load_after": 2.0,
            "date": "2026-11-27"}
    runs = [{"row": "cartpole", "arm": "trpo", "seed": k, "value": v, "metrics": {}, "holds": h, "wall_s": 15.0}
            for k, (v, h) in enumerate(zip(values, holds))]
    return {"meta": {"cartpole": meta}, "rows": {"cartpole": row}, "runs": runs}


def test_the_front_page_takes_a_presets_mean_over_seeds_before_a_later_single_run():
    """A sweep's row (``seeds``) of the plain preset stays on the front page when a single plain run on the same data
    set is recorded after it (a fine-tuning preset's runs name their parents differently); control: between two single
    runs the newer wins, and a later sweep displaces an earlier one."""
    base = {"model": "dpo", "dataset": "shakespeare", "preset": "quick", "changes": ["model.reference=a"]}
    sweep, single, newer = {**base, "value": 1.39, "seeds": 5}, {**base, "value": 1.24}, {**base, "value": 2.0}
    assert docs.front_rows([sweep, single])[0]["value"] == 1.39
    assert docs.front_rows([single, newer])[0]["value"] == 2.0
    assert docs.front_rows([sweep, {**sweep, "value": 1.5}])[0]["value"] == 1.5


def test_the_front_page_takes_a_pytorch_run_before_a_later_one_trained_in_jax():
    """The sweep trains PyTorch's presets, so a plain run trained in JAX (``backend``) recorded after a PyTorch one
    does not take its place; controls: a JAX run is the row where it is the only plain one, and a later PyTorch run
    displaces an earlier JAX one."""
    base = {"model": "ddpm", "dataset": "fashion_mnist", "preset": "quick", "changes": []}
    torch, jax = {**base, "value": 3.605}, {**base, "value": 3.602, "backend": "jax"}
    assert docs.front_rows([torch, jax])[0]["value"] == 3.605
    assert docs.front_rows([jax])[0]["value"] == 3.602
    assert docs.front_rows([jax, torch])[0]["value"] == 3.605


def test_a_headline_over_seeds_reads_cleanly_with_or_without_units():
    row = {"label": "held-out pair accuracy", "value": 0.99853, "sd": 0.00158, "seeds": 5, "min": 0.99636,
           "units": "", "metric": "pair_accuracy", "metrics": {}}
    assert docs._figure(row) == "held-out pair accuracy: **0.9985** +- 0.0016, 5 seeds (min 0.9964)"
    assert docs._figure({**row, "units": "share"}) == ("held-out pair accuracy: **0.9985** +- 0.0016 share, 5 seeds "
                                                       "(min 0.9964)")  # the control: a unit in its place


def test_a_row_without_a_target_shows_its_highest_arm_and_judges_none():
    """A comparison (the disentanglement row): of four arms the README shows the highest mean, says no seed was judged,
    and claims no arm met a target; the control, a judged row of as many arms, counts the arms that met it."""
    record = reproduction(values=(0.2, 0.3), holds=(None, None))
    arms = [{"name": f"arm{k}", "model": "vae", "dataset": "galaxies", "sets": []} for k in range(4)]
    record["rows"]["cartpole"].update(arms=arms, target="none: a comparison", label="MIG", digits=3)
    record["runs"] = [{**run, "arm": f"arm{k}", "value": run["value"] + k / 10} for k in range(4)
                      for run in record["runs"]]
    line = docs.reproduce_summary(record).splitlines()[-1]
    assert "`arm3` (the highest of 4 arms) **0.550**" in line and "| none: a comparison | - |" in line
    for run in record["runs"]:
        run["holds"] = run["arm"] == "arm3"
    assert "`arm3` (best of 4 arms, 1 meeting the target on every seed)" in docs.reproduce_summary(record)


def test_a_rows_baselines_are_neither_judged_nor_its_headline():
    """BiGAN's probe row runs the autoencoder and the VAE beside BiGAN's arms: the front page's line picks its best of
    the subject's arms (not a baseline's higher figure) and the page's table judges no baseline, whatever its runs
    recorded; the control, the same record without ``baselines``, headlines the baseline and counts its seeds."""
    record = reproduction(values=(0.2, 0.3), holds=(True, True))
    arms = [{"name": name, "model": "bigan", "dataset": "fashion_mnist", "sets": []} for name in ("a", "b", "c")]
    arms.append({"name": "autoencoder", "model": "autoencoder", "dataset": "fashion_mnist", "sets": []})
    record["rows"]["cartpole"].update(arms=arms, label="probe", digits=3)
    record["runs"] = [{**run, "arm": arm["name"], "value": run["value"] + (0.5 if arm["name"] == "autoencoder" else 0),
                       "holds": arm["name"] == "autoencoder"} for arm in arms for run in record["runs"]]
    assert "`autoencoder` (best of 4 arms" in docs.reproduce_summary(record)  # the control
    assert docs.reproduce_stats(record, "cartpole", "autoencoder")["met_count"] == 2
    record["rows"]["cartpole"]["baselines"] = ["autoencoder"]
    line = docs.reproduce_summary(record).splitlines()[-1]
    assert "`a` **0.250**" in line and "`c` **0.250**" in line and "autoencoder" not in line
    stats = docs.reproduce_stats(record, "cartpole", "autoencoder")
    assert not stats["judged"] and stats["met_count"] == 0 and not stats["met"]


def test_a_reproduction_is_read_over_its_seeds_beside_the_paper():
    """mean +- sd (min) over the seeds, how many met the target (the control: a seed that missed it is counted out),
    the paper's figure and where it was measured, each arm named where its name is not its model's; the README's
    line links the first topic's page."""
    record = reproduction()
    table = docs.reproduce_table(record, "trpo")
    assert "| `trpo` on cartpole | **493.3** +- 11.5 (min 480.0) | 2 of 3 | 500 +- 0 | - | 15 s |" in table
    for run in record["runs"]:  # an arm named apart from its model is named in the table, as the prose names it
        run["arm"] = "trpo_long"
    record["rows"]["cartpole"]["arms"][0]["name"] = "trpo_long"
    assert "| `trpo_long`: `trpo` on cartpole | **493.3**" in docs.reproduce_table(record, "trpo")
    record = reproduction()
    assert "at abc1234 on AMD EPYC, 2 cores, 2 runs at a time" in table and "Target: 500 on every seed." in table
    record["meta"]["cartpole"]["earlier"] = [{**record["meta"]["cartpole"], "jobs": 1, "runs": 2}]
    assert "1 run at a time, one thread each" in docs.reproduce_table({**record, "meta": {"cartpole": {
        **record["meta"]["cartpole"], "jobs": 1}}}, "trpo")  # one run, not '1 runs', here and of an earlier sweep:
    assert "2 of its runs by an earlier sweep, at abc1234 on AMD EPYC, 2 cores, 1 run at a time (" in \
        docs.reproduce_table(record, "trpo")
    record = reproduction()
    assert docs.reproduce_table(record, "wgan").startswith("*No reproduction recorded yet")
    assert "beside them" not in table
    record["meta"]["cartpole"]["beside"] = "beside them: a test run"  # what ran beside a sweep, said after its load
    assert "2026-11-27; beside them: a test run." in docs.reproduce_table(record, "trpo")
    summary = docs.reproduce_summary(record)
    assert "| [CartPole-v1](records/ppo.md#reproduced) | greedy mean return: `trpo` **493.3** +- 11.5" in summary
    assert "| 500 +- 0 | 500 on every seed | 2 of 3 | abc1234 |" in docs.reproduce_summary(record)
    assert "| 3 of 3 |" in docs.reproduce_summary(reproduction(holds=(True, True, True)))


def test_the_families_table_reads_each_models_row_over_its_seeds_and_names_the_rows_still_to_run():
    """A model's line is the mean of its arm's seeds (FID, precision, recall, its NLL key, ms a sample, training
    minutes); a figure one seed lacks is a dash, not the other seeds' mean (the control); a model whose row has no
    runs names the command that measures it; the row links to the records page of the line's own model."""
    from shared_specs.families import FAMILIES, families_table

    def run(arm, seed, **metrics):
        return {"row": "vae_gan", "arm": arm, "seed": seed, "value": metrics["fid"], "metrics": metrics}

    record = {"rows": {"vae_gan": {"topics": ["vae", "gan"], "arms": [{"name": "vae", "model": "vae"},
                                                                      {"name": "vaegan", "model": "gan"}]}}, "runs": [
        run("vae", 0, fid=80.0, precision=0.6, recall=0.3, nll_bits_per_dim=0.44, sample_ms=0.5, train_s=200.0,
            sample_metrics_samples=10000),
        run("vae", 1, fid=84.0, precision=0.7, recall=0.2, nll_bits_per_dim=0.46, sample_ms=0.7, train_s=220.0,
            sample_metrics_samples=10000),
        run("vaegan", 0, fid=100.0, precision=0.7, recall=0.5, sample_ms=0.4),
        run("vaegan", 1, fid=110.0, precision=0.7, recall=0.5)]}
    lines = {line.split(" | ")[0].lstrip("| "): line for line in families_table(record).splitlines()}
    assert lines["VAE"] == ("| VAE | latent variable | **82.0** | 0.650 | 0.250 | 0.450 | 0.60 | one decoder pass | "
                            "3.5 | 10,000 | 2 | [`vae_gan`](records/vae.md#reproduced) |")
    assert "| **105.0** | 0.700 | 0.500 | - | - | one decoder pass | - | - | 2 |" in lines["VAE-GAN"]
    assert lines["VAE-GAN"].endswith("(records/gan.md#reproduced) |")  # its arm's model's page, not the row's first
    assert "not yet measured: `python -m benchmarks reproduce --rows families --publish`" in lines["WGAN-GP"]
    assert len(lines) == len(FAMILIES) + 2  # the header and its rule (one machine: no note of machines, the control)
    record["meta"] = {"vae_gan": {"machine": "AMD EPYC, 2 cores", "earlier": [{"machine": "Xeon, 2 cores"}]}}
    assert families_table(record).endswith("\n\nThe rows ran on 2 machines: AMD EPYC, 2 cores (`vae_gan`); Xeon, 2 "
                                           "cores (`vae_gan`). The milliseconds a sample and the training minutes "
                                           "compare between lines of one machine.")


def test_a_row_of_many_arms_shows_each_on_its_page_and_its_best_in_the_readme():
    """Each arm's own paper figure on the page; the README's line, for more than three arms, the arm with the most
    seeds meeting the target (control: not the one with the highest mean, which met fewer) and its paper figure."""
    record = reproduction()
    arms = {"plain": ((6.0, 7.0), (False, False), ""), "pack2": ((8.0, 8.0), (True, True), "7.9 +- 0.1"),
            "pack4": ((7.5, 8.0), (False, True), "7.8 +- 0.1"), "big": ((9.0, 9.0), (False, False), "")}
    record["rows"]["cartpole"]["arms"] = [{"name": n, "model": "gan", "dataset": "ring8", "sets": [],
                                            **({"paper": paper} if paper else {})}
                                           for n, (_, _, paper) in arms.items()]
    record["runs"] = [{"row": "cartpole", "arm": n, "seed": k, "value": v, "metrics": {}, "holds": h, "wall_s": 1.0}
                      for n, (values, holds, _) in arms.items() for k, (v, h) in enumerate(zip(values, holds))]
    table = docs.reproduce_table(record, "ppo")
    assert "| `pack2`: `gan` on ring8 | **8.0** +- 0.0 (min 8.0) | 2 of 2 | 7.9 +- 0.1 |" in table
    assert "| `plain`: `gan` on ring8 | **6.5** +- 0.7 (min 6.0) | 0 of 2 | 500 +- 0 |" in table  # no figure of its own
    summary = docs.reproduce_summary(record)
    assert "`pack2` (best of 4 arms, 1 meeting the target on every seed) **8.0** +- 0.0 (min 8.0) | 7.9 +- 0.1 |" in \
        summary and "`big`" not in summary


def test_a_lesson_and_the_results_page_name_the_best_arm_by_the_rows_direction():
    """A row's figure may be better high (an accuracy) or low (an FID: the record's ``lower``): the lesson names the
    arm meeting the target on the most seeds, then the best mean, the lowest where the row says so; the results page
    likewise for a row of more than three arms. Controls: without ``lower`` the highest mean is the best, and an arm
    that met the target on more seeds comes first either way."""
    record = reproduction()
    arms = {"augmented": 24.9, "not_augmented": 26.0, "one_stage": 23.0, "fourth": 25.5}
    record["rows"]["cartpole"].update(topics=["ddpm"], label="FID", paper_figure="-", target="none", lower=True,
                                      arms=[{"name": n, "model": "ddpm", "dataset": "fashion_mnist", "sets": []}
                                            for n in arms])
    record["runs"] = [{"row": "cartpole", "arm": n, "seed": 0, "value": v, "metrics": {}, "holds": None, "wall_s": 1.0}
                      for n, v in arms.items()]
    assert lessons.summary_block("ddpm", [], record).startswith("- Reproduced, *CartPole-v1*: FID 23.0 over 1 seeds "
                                                                 "(`one_stage`).\n")
    assert "`one_stage` (the lowest of 4 arms) **23.0**" in docs.reproduce_summary(record)
    del record["rows"]["cartpole"]["lower"]  # a figure better high: the highest mean
    assert "FID 26.0 over 1 seeds (`not_augmented`)" in lessons.summary_block("ddpm", [], record)
    assert "`not_augmented` (the highest of 4 arms) **26.0**" in docs.reproduce_summary(record)
    record["rows"]["cartpole"]["lower"] = True
    for run in record["runs"]:  # the worst FID met the target, the others missed it: it is named first
        run["holds"] = run["arm"] == "not_augmented"
    assert ": FID 26.0 over 1 seeds (`not_augmented`); the target (none) met on 1 of 1 seeds." in \
        lessons.summary_block("ddpm", [], record)


def test_a_gap_row_reads_the_share_of_the_gap_closed_seed_by_seed():
    """DANN's target is the share of the gap from source-only to train-on-target it closes, paired by seed: (0.72 -
    0.4) / (0.8 - 0.4) = 0.8 on seed 0, (0.5 - 0.4) / (0.9 - 0.4) = 0.2 on seed 1 (control: counted out of the
    seeds at one half); no arm is judged alone. The paper's share from its arms' figures, (0.6 - 0.5) / (0.9 - 0.5);
    the lesson's line is the share, not the best arm's accuracy (control: the train-on-target bound, 0.85)."""
    record = reproduction()
    record["rows"]["cartpole"].update(gap=["low", "mid", "high"], digits=3, topics=["domain_adversarial"], arms=[
        {"name": n, "model": "domain_adversarial", "dataset": "fashion_mnist", "sets": [], "paper": paper}
        for n, paper in (("low", "0.5"), ("mid", "0.6"), ("high", "0.9"))])
    values = {"low": (0.4, 0.4), "mid": (0.72, 0.5), "high": (0.8, 0.9)}
    record["runs"] = [{"row": "cartpole", "arm": n, "seed": k, "value": v, "metrics": {}, "holds": None, "wall_s": 1.0}
                      for n, vs in values.items() for k, v in enumerate(vs)]
    assert docs.gap_shares(record, "cartpole") == pytest.approx({0: 0.8, 1: 0.2})
    table = docs.reproduce_table(record, "domain_adversarial")
    assert "| **0.610** +- 0.156 (min 0.500) | - |" in table  # mid's accuracy, no verdict of its own
    assert "that `mid` closes, (`mid` - `low`) / (`high` - `low`) on each seed: **50%** +- 42% (min 20%); half or " \
           "more on 1 of 2 seeds." in table
    assert "; the gap `mid` closes: **50%** +- 42% (min 20%), half or more on 1 of 2 seeds | the gap `mid` closes: " \
           "25% |" in docs.reproduce_summary(record)
    lesson = lessons.summary_block("domain_adversarial", [], record)
    assert ": the gap `mid` closes: **50%** +- 42% (min 20%), half or more on 1 of 2 seeds, the paper's 25%; the " \
           "target: " in lesson and "0.850" not in lesson
    assert docs.paper_gap_share({**record["rows"]["cartpole"], "arms": [{"name": "low"}, {"name": "mid"},
                                                                        {"name": "high"}]}) is None
    quoted = [docs.quote(f"reproduce:cartpole/gap/{stat}", [], record) for stat in ("mean", "min", "half")]
    assert quoted == ["50%", "20%", "1 of 2"]  # what a page's prose may quote of it


def test_a_prose_quote_is_generated_and_a_hand_typed_one_that_drifted_is_caught(copy_of_docs):
    """A page's ``<!--q:KEY-->FIGURE<!--/q-->`` is its table's figure: planted with another figure, the page is stale;
    a key that names no figure is one line. Control: planted with the right figure, the page is current."""
    results = json.loads((copy_of_docs / docs.RESULTS_FILE).read_text())
    vae = next(r for r in docs.front_rows(results) if r["model"] == "vae")
    assert docs.quote("results:vae/fashion_mnist", results, {}) == f"{vae['value']:.4g}"
    full = [{**vae, "preset": "full", "value": 0.41, "train_seconds": 153.0, "date": "2026-11-27"},
            {**vae, "preset": "full", "value": 0.39, "date": "2026-11-01", "device": "cpu"},  # older: not quoted
            {**vae, "preset": "full", "value": 0.40, "changes": ["model.beta=4"]}]  # not the plain preset's run
    metric = next(k for k, v in vae["metrics"].items() if isinstance(v, float) and v != vae["value"])
    assert docs.quote(f"results:vae/fashion_mnist/{metric}", results, {}) == f"{vae['metrics'][metric]:.4g}"
    with pytest.raises(ValueError, match="which is no figure"):  # the control: a figure the row did not record
        docs.quote("results:vae/fashion_mnist/no_such_metric", results, {})
    assert docs.quote("results:vae/fashion_mnist/full/value", results + full, {}) == "0.41"
    assert docs.quote("results:vae/fashion_mnist/full/train_seconds", results + full, {}) == "153"
    with pytest.raises(ValueError, match="which is no figure"):  # the control: no such preset
        docs.quote("results:vae/fashion_mnist/huge/value", results + full, {})
    record = reproduction()
    assert docs.quote("reproduce:cartpole/trpo/mean", results, record) == "493.3"
    assert docs.quote("reproduce:cartpole/trpo/met", results, record) == "2 of 3"
    record["runs"] = [{**r, "metrics": {"min_return": 400.0 + r["seed"]}} for r in record["runs"]]
    assert docs.quote("reproduce:cartpole/trpo/min_return", results, record) == "401"  # a recorded metric's mean
    values = {r["seed"]: r for r in record["runs"] if r["arm"] == "trpo"}  # one seed's figures, for prose seed by seed
    assert docs.quote("reproduce:cartpole/trpo/seed2", results, record) == f"{values[2]['value']:.1f}" != \
        docs.quote("reproduce:cartpole/trpo/seed0", results, record)
    assert docs.quote("reproduce:cartpole/trpo/min_return/seed2", results, record) == "402"
    for nothing in ("seed7", "min_return/seed7", "no_such_metric/seed0"):  # controls: no such seed, no such figure
        with pytest.raises(ValueError, match="which is no figure"):
            docs.quote(f"reproduce:cartpole/trpo/{nothing}", results, record)
    with pytest.raises(ValueError, match="'reproduce:cartpole/ppo/mean', which is no figure"):
        docs.quote("reproduce:cartpole/ppo/mean", results, record)
    gpu = {"rows": [{"model": "ddpm", "examples_per_s": 6274.3, "mfu": 0.2301, "gpu_busy": 0.981, "note": ""}],
           "variants": [{"name": "ddpm_batch256", "model": "ddpm", "mfu": 0.2649}]}  # a GPU row, and a variant beside it
    assert [docs.quote(f"gpu:{key}", [], {}, gpu) for key in ("ddpm/examples_per_s", "ddpm/mfu", "ddpm/gpu_busy",
                                                              "ddpm_batch256/mfu")] == ["6,274", "23.0%", "98%", "26.5%"]
    for nothing in ("vae/mfu", "ddpm/note", "ddpm_batch256/gpu_busy", "ddpm"):  # controls: no row, field or figure
        with pytest.raises(ValueError, match="which is no figure"):
            docs.quote(f"gpu:{nothing}", [], {}, gpu)
    page = copy_of_docs / "docs/topics/vae.md"
    text = page.read_text()
    right = f"The quick preset: <!--q:results:vae/fashion_mnist-->{vae['value']:.4g}<!--/q--> bits/dim.\n"
    page.write_text(text + right)
    assert docs.stale(copy_of_docs) == []
    page.write_text(text + right.replace(f"{vae['value']:.4g}", "0.4"))
    assert docs.stale(copy_of_docs) == ["docs/topics/vae.md is stale"]
    page.write_text(text + "<!--q:results:vae/nope-->1<!--/q-->\n")
    assert docs.stale(copy_of_docs) == ["docs/topics/vae.md: a prose quote names 'results:vae/nope', which is no "
                                        "figure: results:MODEL/DATASET[/METRIC|/PRESET/value|train_seconds] or "
                                        "reproduce:ROW/ARM/mean|sd|min|max|seeds|met|"
                                        "a recorded metric[/seedK]|seedK or reproduce:ROW/gap/mean|min|half or "
                                        "gpu:MODEL/FIELD"]
    page.write_text(text)
    gpu_page = copy_of_docs / docs.GPU_PAGE  # a GPU figure quoted from docs/gpu_steps.json, then drifted
    text = gpu_page.read_text()
    ddpm = next(r for r in json.loads((copy_of_docs / docs.GPU_FILE).read_text())["rows"] if r["model"] == "ddpm")
    gpu_page.write_text(text + f"ddpm: <!--q:gpu:ddpm/mfu-->{ddpm['mfu']:.1%}<!--/q--> MFU.\n")
    assert docs.stale(copy_of_docs) == []
    gpu_page.write_text(text + "ddpm: <!--q:gpu:ddpm/mfu-->25.0%<!--/q--> MFU.\n")
    assert docs.stale(copy_of_docs) == [f"{docs.GPU_PAGE} is stale"]


# Lessons: short, their code quoted from the source, their formulas typeset. ---------------------------------------
def test_every_lesson_is_at_most_2000_words_and_a_longer_one_is_caught(copy_of_docs):
    counts = {t.name: lessons.lesson_words((ROOT / docs.TOPICS_DIR / f"{t.name}.md").read_text())
              for t in docs.topics_with_pages()}
    assert max(counts.values()) <= lessons.MAX_LESSON_WORDS, counts
    assert lessons.lesson_words("one two\n```python\nnot counted at all\n```\n<!-- nor this --><b>three</b>") == 3
    assert lessons.lesson_words("`eta <= 1` keeps the > words") == 5  # a bare "<" is no tag
    page = copy_of_docs / "docs/topics/elbo.md"
    page.write_text(page.read_text() + "\n" + "word " * (lessons.MAX_LESSON_WORDS - counts["elbo"] + 1))
    assert any(line.startswith("docs/topics/elbo.md: the lesson has 2001 words") for line in docs.stale(copy_of_docs))


def test_a_lesson_quotes_its_code_from_the_source_and_a_drifted_quote_is_caught(copy_of_docs):
    page = copy_of_docs / "docs/topics/elbo.md"
    text = page.read_text()
    quoted = lessons.source_of(ROOT, "practice_torch/elbo.py:iwae_bound")
    assert quoted.startswith("def iwae_bound(log_weights):") and quoted in text
    assert lessons.source_of(ROOT, "practice_torch/gan/training.py:Config").startswith("@dataclass")  # decorated
    page.write_text(text.replace("return log_mean_exp(log_weights, axis=-1)", "return log_weights.mean(-1)"))
    assert docs.stale(copy_of_docs) == ["docs/topics/elbo.md is stale"]
    page.write_text(text.replace("elbo.py:iwae_bound:", "elbo.py:no_such_function:"))
    assert docs.stale(copy_of_docs) == ["docs/topics/elbo.md: a code quote names no_such_function in "
                                        "practice_torch/elbo.py, which defines no such function or class"]


def test_a_lesson_that_holds_a_records_table_is_caught(copy_of_docs):
    page = copy_of_docs / "docs/topics/elbo.md"
    page.write_text(page.read_text() + f"\n{docs.begin('specs')}\n{docs.end('specs')}\n")
    assert docs.stale(copy_of_docs) == ["docs/topics/elbo.md holds the generated 'specs' block, which belongs on "
                                        "docs/records/elbo.md"]


def test_every_formula_of_the_pages_typesets_and_a_broken_one_is_named(tmp_path):
    assert site.math_errors(docs.doc_files(), ROOT) == []
    page = tmp_path / "a.md"
    page.write_text("Fine: $x^2$ and\n\n$$\n\\frac{a}{b}\n$$\n\nbroken: $\\frac{1}{2$ here,"
                    " code is not math: `$\\frac{$`, nor is $ 5 alone.\n")
    errors = site.math_errors([page], tmp_path)
    assert len(errors) == 1 and errors[0].startswith("a.md:7: KaTeX parse error") and "\\frac{1}{2" in errors[0]
    assert [f.tex for f in site.formulas(page.read_text())] == ["x^2", "\\frac{a}{b}", "\\frac{1}{2"]
