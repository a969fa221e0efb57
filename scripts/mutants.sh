#!/usr/bin/env bash
# Mutation check, run on demand (not in CI): break the core one line at a time and show
# which tests catch it.   bash scripts/mutants.sh [NAME…]   (default: every mutation)
#
# Each mutation is applied to a fresh temporary copy of the repository (the working tree,
# uncommitted changes included, is copied and never touched), the tests named for it run
# against that copy, and a Markdown table says which tests failed. A mutation no test
# catches is MISSED and the script exits 1. The mutated text is found by content anywhere
# under kb/, so the table survives modules moving between files.
#
# Python: $KB_PYTHON, else .venv/bin/python, else python3. About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${KB_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kb-mutants.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# name | text under kb/ (exactly one occurrence) | replacement | tests to run
MUTATIONS=$(
  cat <<'EOF'
fusion-max|fused.get(position, 0.0) + weight / (k + rank)|max(fused.get(position, 0.0), weight / (k + rank))|tests/test_quality.py
filter-inverted|mask &= np.isin(self.codes["field"],|mask &= ~np.isin(self.codes["field"],|tests/test_search.py -k filter
escaping-off|else str(escape(p))|else str(p)|tests/test_web_security.py -k "highlight or hostile or corpus_html"
checksum-unverified|if file_digest(path) != recorded["xxh3"]:|if False:|tests/test_index.py tests/test_faults.py
cp932-dropped|CSV_ENCODINGS = ("utf-8-sig", "cp932")|CSV_ENCODINGS = ("utf-8-sig",)|tests/test_ingest_export.py -k "shift_jis or cp932 or encod"
carry-over-stale|f"{passage_text(c)}\x1f{lexical_text(c)}".encode(|c.id.encode(|tests/test_index.py -k "rebuild or carr"
ndcg-ideal-unsorted|dcg(sorted(grades.values(), reverse=True)[:k])|dcg(list(grades.values())[:k])|tests/test_quality.py
recall-over-k|/ len(grades) if grades else 0.0|/ k if grades else 0.0|tests/test_quality.py
body-limit-off|app.add_middleware(BodyLimit, limit_of=_body_limit, refuse=_too_large)|pass|tests/test_body_limit.py
body-limit-16MiB|MAX_BODY_BYTES = 16 * 1024|MAX_BODY_BYTES = 16 * 1024 * 1024|tests/test_body_limit.py
body-limit-header-only|size += len(message.get("body", b""))|size += 0|tests/test_body_limit.py
fault-swap-before-write|staging.mkdir(parents=True)|staging.mkdir(parents=True); _point_current(root, staging)|tests/test_faults.py
fault-failed-build-kept|shutil.rmtree(written, ignore_errors=True)|pass|tests/test_faults.py
ivf-nprobe-1|index.nprobe = max(MIN_NPROBE, lists // 8)|index.nprobe = 1|tests/test_dense_ivf.py
ivf-filter-nprobe-lost|faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)|faiss.SearchParametersIVF(sel=selector)|tests/test_dense_ivf.py
query-terms-dropped-on-hostile|for token in self.analyse(query):|for token in (self.analyse(query) if query.isprintable() else ()):|tests/test_analysis.py
controls-glue-words|"".join(ch if ch.isprintable() else " " for ch in text)|"".join(ch for ch in text if ch.isprintable())|tests/test_analysis.py
vocab-english-inside-words|if _whole(folded_query, end - len(word) + 1, end + 1, word)|if True|tests/test_analysis.py
judge-rows-all-hold|return column[at] == rows|return np.ones(len(rows), dtype=bool)|tests/test_lexical.py tests/test_judge.py
hostile-query-no-terms|weights = self.analyzer.query_weights(query)|weights = self.analyzer.query_weights(query) if query.isprintable() else {}|tests/test_search.py
store-kept-wrong-key|found = {key: memo.recall((key,)) for key in keys}|found = {key: memo.recall((keys[0],)) for key in keys}|tests/test_index.py -k store
api-fold-ignored|fold = parse_flag(params.get("fold", ""), "fold")|fold = parse_flag(params.get("fold", ""), "fold") and False|tests/test_history.py -k api
judge-vocabulary-never-vouches|if uncovered:  # words the table lacks|if False:  # words the table lacks|tests/test_judge.py
judge-loosest-cut|near = [cut for cut, score in scores.items() if score >= best - F2_TOLERANCE]|near = [max(scores, key=scores.__getitem__)]|tests/test_judge.py
word-pattern-substring|if _ASCII_WORD.match(word):|if False:|tests/test_analysis.py tests/test_judge.py
judge-how-many-is-content|if token.surface.startswith(_HOW_MANY) and token.pos[:1] == ("名詞",):|if False:|tests/test_judge.py -k "question_words"
judge-meaning-alone-always|alone = np.where(np.asarray(best_share)[..., None] < 1, cuts.meaning_gap, -1.0)|alone = np.where(np.asarray(best_share)[..., None] < 2, cuts.meaning_gap, -1.0)|tests/test_judge.py -k "meaning_alone or exact_term"
judge-phrase-per-token|positions = spelling.covered(entry.words) if "lexical" in entry.legs else ()|positions = {i for i in spelling.covered(entry.words) if any(normalised(w) in spelling.folded[i] for w in entry.words)} if "lexical" in entry.legs else ()|tests/test_judge.py -k "english_phrase"
judge-negation-ignored|negated = match.start() > start and self.text[match.start() - 1] in _NEGATIONS|negated = False|tests/test_judge.py -k "negated"
judge-some-share-ignored|gap = np.where(shares > cuts.some_share, cuts.similarity_gap, alone)|gap = np.where(shares > 0, cuts.similarity_gap, alone)|tests/test_judge.py -k "some_share"
vocab-no-dictionary-form|return word if word in self._english else dictionary_form(word)|return word|tests/test_analysis.py -k inflection
judge-similarity-ignored|similarity=best_similarity,|similarity=0.0,|tests/test_judge.py -k "not_fitted_on or fitted_on_every"
calibrate-folds-in-file-order|key=lambda s: (s.query.query, s.query.kind),|key=lambda s: 0,|tests/test_judge.py -k order
pairs-one-shared-enough|keep = (scores > 0) & (held >= min(MIN_SHARED_PAIRS, len(set(pairs))))|keep = scores > 0|tests/test_grams.py tests/test_search.py -k "pairs or without_words"
pairs-of-the-typed-query|pairs = grams.pairs(written)|pairs = grams.pairs(query)|tests/test_grams.py
bm25-tf-ignored|tf_array=tf.astype(bm25.dtype),|tf_array=np.ones_like(tf, dtype=bm25.dtype),|tests/test_lexical.py
themes-council-unnamed|rows_of[COUNCIL] = council|rows_of[COUNCIL] = []|tests/test_themes.py -k "council or hand_judged"
unknown-words-unsaid|return list(dict.fromkeys(self.judgement.evidence.uncovered)) if self.judgement else []|return []|tests/test_web_api.py tests/test_search.py -k "no_cell_writes"
topicless-answered|if not evidence.topical:|if False:|tests/test_judge.py tests/test_web_api.py tests/test_search.py -k topic
related-any-field|        if cell.chunk.field != Field.challenge:|        if False:|tests/test_web_api.py tests/test_themes.py -k "related"
server-timing-embed-dropped|timings.get("embed", 0.0) + embedded_ms|timings.get("embed", 0.0)|tests/test_web_api.py -k phases_took
api-empty-query-lists-nothing|result = browse(filters, limit=k) if filters else None|result = None|tests/test_web_api.py -k "empty"
cli-weak-list-uncapped|click.echo("\n".join(_weak_line(h) for h in result.weak[:WEAK_SHOWN]))|click.echo("\n".join(_weak_line(h) for h in result.weak))|tests/test_search.py -k weak_hits_apart
rejected-build-retried|self._rejected = live|pass|tests/test_index.py -k damaged_new_build
broken-synonyms-edit-raises|except KbError as exc:  # a half-saved edit: keep the last good synonyms|except ZeroDivisionError as exc:|tests/test_search.py -k half_saved
browse-facets-of-shown|facets=index.store.facet_counts(positions),|facets=index.store.facet_counts(np.array(shown, dtype=np.int64)),|tests/test_history.py -k past_the_shown
themes-related-from-later-years|and h.chunk.year <= central.year|and True|tests/test_themes_over_time.py -k first_year
fullwidth-english-unknown|return unicodedata.normalize("NFKC", word).isascii()|return word.isascii()|tests/test_web_api.py -k english_word
EOF
)

copy_repo() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard |
    tar --null -T - -cf - --ignore-failed-read 2>/dev/null | tar -xf - -C "$1"
  # The embedding cache (git-ignored) only makes the copy's builds quicker.
  if [ -d index/cache ]; then mkdir -p "$1/index" && cp -r index/cache "$1/index/"; fi
}

mutate() { # folder, text, replacement: replace the one occurrence under folder/kb
  OLD=$2 NEW=$3 "$PY" - "$1" <<'EOF'
import os, sys
from pathlib import Path

old, new = os.environ["OLD"], os.environ["NEW"]
found = [p for p in Path(sys.argv[1], "kb").rglob("*.py") if old in p.read_text("utf-8")]
counts = [p.read_text("utf-8").count(old) for p in found]
if counts != [1]:
    sys.exit(f"'{old}' occurs {sum(counts)} times in {[str(p) for p in found]}, not once")
found[0].write_text(found[0].read_text("utf-8").replace(old, new), "utf-8")
print(found[0].relative_to(sys.argv[1]))
EOF
}

selected=("$@")
missed=0
printf '| mutation | file | caught by |\n| --- | --- | --- |\n'
while IFS='|' read -r name old new tests; do
  if [ ${#selected[@]} -gt 0 ] && [[ ! " ${selected[*]} " == *" $name "* ]]; then continue; fi
  copy="$WORK/$name"
  copy_repo "$copy"
  if ! file=$(mutate "$copy" "$old" "$new" 2>&1); then
    printf '| %s | – | **NOT APPLIED**: %s |\n' "$name" "$file"
    missed=$((missed + 1))
    continue
  fi
  log="$WORK/$name.log"
  set +e
  (cd "$copy" && eval "PYTHONPATH='$copy' KB_HOME='$copy' OMP_WAIT_POLICY=PASSIVE \
    '$PY' -m pytest -q -p no:cacheprovider -o addopts='' -rf $tests") >"$log" 2>&1
  status=$?
  set -e
  caught=$({ grep -E '^FAILED ' "$log" || true; } | sed -E 's/^FAILED (tests\/)?([^ ]+).*/\2/; /test_faults/!s/\[.*//' |
    awk '!seen[$0]++' | head -3 | paste -sd ',' - | sed 's/,/, /g')
  if [ $status -eq 1 ] && [ -n "$caught" ]; then
    count=$(grep -cE '^FAILED ' "$log")
    printf '| %s | %s | %s (%s failed) |\n' "$name" "$file" "$caught" "$count"
  else
    printf '| %s | %s | **MISSED** (pytest exit %s: %s) |\n' "$name" "$file" "$status" \
      "$(tail -1 "$log")"
    missed=$((missed + 1))
  fi
  rm -rf "$copy"
done <<<"$MUTATIONS"
[ $missed -eq 0 ] || { echo "$missed mutation(s) not caught" >&2; exit 1; }
