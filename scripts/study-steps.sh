# Sourced by the study scripts: `train NAME ARGS...` and `evaluate NAME ARGS...` run `l2o train` / `l2o eval`
# into "$out/NAME" unless a finished output is already there (a checkpoint, a summary), so an interrupted study
# resumes where it stopped. Needs $out and $l2o.
train() { # name, args...
  local name=$1
  shift
  if [ -f "$out/$name/checkpoint.l2o" ]; then
    echo "$out/$name exists: reusing it" >&2
  else
    "$l2o" train "$@" --out "$out/$name" | tee "$out/$name.txt"
  fi
}
evaluate() { # name, args...
  local name=$1
  shift
  if [ -f "$out/$name/summary.md" ]; then
    echo "$out/$name exists: reusing it" >&2
  else
    "$l2o" eval "$@" --out "$out/$name"
  fi
}
