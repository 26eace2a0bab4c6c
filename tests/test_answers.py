"""The answers page's sentences come from the chapters' results: change an upstream value and the sentence follows."""
import copy

from lensnb import answers


def _g():
    return {
        "03_pools": {"unpaired_e4_verdict": "shortcut", "core_LR_unpaired_auroc": 0.87, "core_LR_unpaired_ci_low": 0.77,
                     "core_LR_unpaired_ci_high": 0.96, "e4_text": "The core LR gate gives 0.870.", "h1_text": "",
                     "hostprop_text": "", "balance_text": ""},
        "04_training": {"E1_auroc": 0.9, "E1_ci_low": 0.85, "E1_ci_high": 0.95, "E2_auroc": 0.85, "E2_ci_low": 0.82,
                        "E2_ci_high": 0.9, "E3_auroc": 0.86, "E3_ci_low": 0.8, "E3_ci_high": 0.92, "crit0_verdict": "pass",
                        "crit1_verdict": "undecidable", "crit1_text": "", "w_bound": 0.05, "gap": 0.01, "gap_lo": -0.05,
                        "gap_hi": 0.07},
        "05_gates": {"g_host_properties_unpaired_verdict": "no shortcut", "g_core_LR_unpaired_verdict": "shortcut"},
        "06_sample_size": {"need_gap": "120 test hosts", "need_core": "30 test hosts", "req_test_hosts": 40},
        "07_literature": {"n_host_disjoint": 0, "n_finders": 33, "n_pos_real": 5, "n_neg_real": 8, "cites_pos_real": "A; B"},
        "08_alternatives": {"alt_favoured_text": "X ranks first.", "alt_favoured_name": "unpaired_raw_residual",
                            "alt_favoured": "unpaired, raw + residual", "alt_favoured_shortcut": "removes the core shortcut"},
        "09_failure_modes": {"fm_n_fire": 2, "fm_n_risks": 14, "fm_fired": "*a*, *b*", "fm_n_undecidable": 3,
                             "fm_conf_planted_monitor": "fires"},
    }


def test_q1_and_the_headline_follow_the_e4_gate():
    g = _g()
    r = answers.compose(g)
    assert r["q"]["Q1"]["verdict"].startswith("No.") and r["headline"].startswith("Do not run the proposal")
    assert [e["verdict"] for e in r["e_rows"]] == ["—", "pass", "undecidable", "fail"]
    g2 = copy.deepcopy(g)
    g2["03_pools"]["unpaired_e4_verdict"] = "no shortcut"
    r2 = answers.compose(g2)
    assert r2["q"]["Q1"]["verdict"].startswith("Yes") and "passes" in r2["headline"]
    assert r2["e_rows"][3]["verdict"] == "pass"
    g2["03_pools"]["unpaired_e4_verdict"] = "undecidable"
    assert answers.compose(g2)["q"]["Q1"]["verdict"].startswith("Undecided")


def test_sample_size_verdict_compares_need_with_the_request():
    g = _g()
    assert answers.compose(g)["q"]["Q3"]["verdict"].startswith("No: the request's test set is too small")
    g["06_sample_size"]["need_gap"] = "30 test hosts"
    assert answers.compose(g)["q"]["Q3"]["verdict"].startswith("Yes")
    g["06_sample_size"]["need_core"] = "more than 40 test hosts"
    assert answers.compose(g)["q"]["Q3"]["verdict"].startswith("No")


def test_other_answers_follow_their_chapters():
    g = _g()
    r = answers.compose(g)
    assert r["q"]["Q6"]["verdict"] == "2 of 14 measured risks fire on these data: *a*, *b*."
    assert "do not separate the classes" in r["q"]["Q2"]["verdict"] and "caught by" in r["q"]["Q2"]["verdict"]
    assert "No published finder among the 33" in r["q"]["Q7"]["verdict"]
    assert any("**unpaired, raw + residual**" in x for x in r["recommendation"])
    g["09_failure_modes"]["fm_n_fire"] = 0
    g["05_gates"]["g_host_properties_unpaired_verdict"] = "shortcut"
    g["07_literature"]["n_host_disjoint"] = 2
    g["08_alternatives"]["alt_favoured_shortcut"] = "undecidable at this size"
    r = answers.compose(g)
    assert r["q"]["Q6"]["verdict"].startswith("None of 14")
    assert "already separate the classes" in r["q"]["Q2"]["verdict"]
    assert r["q"]["Q7"]["verdict"].startswith("2 of the 33")
    assert any(x.startswith("No design tried both keeps the lenses") for x in r["recommendation"])
    assert "06_sample_size::memo_text" in r["missing"] and "04_training::E1_auroc" not in r["missing"]


def test_reliance_sentence_is_the_failure_mode_chapters_one_measure():
    g = _g()
    assert "Model-level reliance" not in answers.compose(g)["q"]["Q4"]["evidence"]
    g["05_gates"]["core_rel_text"] = "The paired model relies on the core: 0.9."  # the gates chapter's own presets
    g["09_failure_modes"].update(fm_rel_text="hiding the core costs the unpaired model 0.40 for all lenses",
                                 fm_preset="detectable")
    ev = answers.compose(g)["q"]["Q4"]["evidence"]
    assert "Model-level reliance on the `detectable` lenses (failure-modes chapter): hiding the core costs" in ev
    assert "0.9" not in ev and "disagree" not in ev  # one quantity, one number on the page
    g["09_failure_modes"]["fm_preset"] = ""
    assert "reliance on your data" in answers.compose(g)["q"]["Q4"]["evidence"]


def test_missing_chapters_are_reported_not_invented():
    r = answers.compose({})
    assert r["q"]["Q6"]["verdict"] == "Not measured." and r["e_rows"][0]["measured (AUROC, 95% CI)"] == "not measured"
    assert "06_sample_size::need_gap" in r["missing"]


def test_design_points_mark_designs_that_lose_the_lenses():
    a = {"alt_ranked_names": "a, b"}
    for n, dh in (("a", 0.01), ("b", -0.2)):
        a.update({f"alt_{n}_{k}": 0.5 for k in ("auroc", "lo", "hi", "core", "core_lo", "core_hi")})
        a.update({f"alt_{n}_diff90_lo": dh - 0.05, f"alt_{n}_diff90_hi": dh, f"alt_{n}_label": n.upper(), f"alt_{n}_shortcut": "removes the core shortcut"})
    pts = answers.design_points({"08_alternatives": a})
    assert [p["name"] for p in pts] == ["a", "b"] and [p["keeps"] for p in pts] == [True, False]


def test_population_note_follows_the_data_chapters_lens_shares():
    g = _g()
    assert answers.compose(g)["population"] == ""  # data chapter not executed: no claim
    g["02_data"] = {"physical__frac_unresolved": 0.88, "physical__frac_detectable": 0.05,
                    "detectable__frac_unresolved": 0.01, "detectable__frac_detectable": 1.0}
    g["08_alternatives"]["alt_preset"] = "physical"
    note = answers.compose(g)["population"]
    assert "`physical` preset: 88% of its lenses are unresolved" in note and "5% pass" in note
    assert "no survey finds" in note
    g["08_alternatives"]["alt_preset"] = "detectable"
    note = answers.compose(g)["population"]
    assert "`detectable` preset: 1% of its lenses are unresolved" in note and "100% pass" in note
    assert "(the `physical` preset) 88% are unresolved" in note and "no survey finds" not in note
    g["02_data"] = {"user_data__frac_unresolved": 0.1, "user_data__frac_resolved": 0.7}
    assert answers.compose(g)["population"].startswith("Your data: 10% of the injected lenses are unresolved")


def test_brightness_note_compares_the_arcs_with_the_detectable_lenses():
    g = {"02_data": {"request__arc_g": 21.0, "request__arc_to_host": 0.08, "request__arc_snr": 60.0,
                     "detectable__arc_g": 23.1, "detectable__arc_snr": 25.0, "sweep_text": "It reaches 0.95 at S/N 40."}}
    s = answers.brightness_note(g)
    assert s.startswith("The request preset's arcs have a median lensed g magnitude of 21.0")
    assert "2.1 mag brighter than the lenses a survey finder can find" in s and s.endswith("It reaches 0.95 at S/N 40.")
    g["02_data"].update({"user_data__arc_g": 23.2, "user_data__arc_to_host": 0.01, "user_data__arc_snr": 22.0})
    s = answers.brightness_note(g)  # the team's own stamps take over, and the sentence flips with them
    assert s.startswith("Your arcs") and "as bright as the lenses" in s
    g["02_data"]["user_data__arc_g"] = 24.5
    assert "1.4 mag fainter than" in answers.brightness_note(g)
    assert answers.brightness_note({}) == ""


def test_the_decision_table_follows_the_numbers():
    g = _g()
    d = answers.compose(g)["decisions"]
    first = d[0]["next step"]
    assert first == "Do not run the proposal as written" and "0.870 (0.770–0.960)" in d[0]["what would change it"]
    assert "Run the monitors on every training set and model" in [r["next step"] for r in d]
    g["03_pools"]["unpaired_e4_verdict"] = "no shortcut"
    flipped = answers.compose(g)["decisions"][0]["next step"]
    assert first != flipped and flipped == "Run the proposal with the gates below"
    g["08_alternatives"].update(alt_favoured_name="unpaired_raw_residual", alt_favoured="unpaired, raw + residual",
                                alt_favoured_shortcut="does not remove it")
    steps = [r["next step"] for r in answers.compose(g)["decisions"]]
    assert "Compare unpaired, raw + residual (first by completeness; its core gates: does not remove it) with the " \
           "proposal on your data" in steps  # never "train it instead" when its gates find the shortcut
    g["08_alternatives"]["alt_favoured_shortcut"] = "removes the core shortcut"
    assert "Train unpaired, raw + residual instead" in [r["next step"] for r in answers.compose(g)["decisions"]]


def test_evidence_reads_one_sentence_per_line_and_never_splits_a_number():
    text = ("The unpaired core gate reads 0.851 (0.824–0.878) with host-grouped folds. With plain k-fold it reads "
            "0.997; Paired designs read 0.889. E3 − E2 is bounded by 0.012, e.g. The bound.")
    lines = answers.as_lines(text).splitlines()
    assert lines == ["- The unpaired core gate reads 0.851 (0.824–0.878) with host-grouped folds.",
                     "- With plain k-fold it reads 0.997.", "- Paired designs read 0.889.",
                     "- E3 − E2 is bounded by 0.012, e.g. The bound."]
    assert answers.as_lines("") == "" and answers.as_lines("One line without a stop") == "- One line without a stop."


def test_brightness_note_carries_the_measured_cost_when_the_alternatives_ran():
    cost = "At 1% false positives your model finds 0.900 (0.85–0.95) of your own test arcs and 0.300 (0.2–0.4) ..."
    g = {"08_alternatives": {"alt_brightness_cost_text": cost}}
    assert answers.brightness_note(g) == f"What that costs (alternatives chapter, brightness-cost table): {cost}"
    g["02_data"] = {"request__arc_g": 21.0, "request__arc_to_host": 0.08, "request__arc_snr": 60.0,
                    "detectable__arc_g": 23.1, "detectable__arc_snr": 25.0}
    s = answers.brightness_note(g)
    assert s.startswith("The request preset's arcs") and s.endswith(cost)


def test_the_decision_table_says_what_arc_brightness_costs_and_flips_with_it():
    g = {"08_alternatives": {"alt_cost_change": -0.30, "alt_cost_lo": -0.40, "alt_cost_hi": -0.20,
                             "alt_cost_reading": "lower", "alt_cost_fpr_pct": 1.0}}
    row = [r for r in answers.compose(g)["decisions"] if "brightness" in r["next step"]]
    assert len(row) == 1 and row[0]["next step"] == "Train at the brightness of the lenses you search"
    assert "at 1% FPR (now -0.300 (-0.400 to -0.200), lower" in row[0]["what would change it"]
    g["08_alternatives"].update(alt_cost_change=0.01, alt_cost_lo=-0.03, alt_cost_hi=0.05,
                                alt_cost_reading="no difference shown")
    row = [r for r in answers.compose(g)["decisions"] if "brightness" in r["next step"]]
    assert row[0]["next step"] == "Keep the arc brightness, and check it on your data"
    row = [r for r in answers.compose(g, source="your data (`/x`)")["decisions"] if "brightness" in r["next step"]]
    assert row[0]["next step"] == "Keep the arc brightness" and "with more test hosts" in row[0]["what would change it"]
