"""Checks a `nas export` folder with PyTorch alone: loads subnet.pt with torch.jit.load, runs it on
the check images and compares with the supernet's logits; loads weights.safetensors with the
safetensors package and checks the manifest's shapes. Prints one JSON line; exits 1 on a mismatch.

With `--against FILE` (written by `nas eval --save-logits FILE`), the module must also reproduce
`nas eval`'s logits on that file's images.

Usage: python bench/check_export.py EXPORT_DIR [--against LOGITS.safetensors] [--limit 1e-4]
"""
import argparse
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir", type=pathlib.Path)
    parser.add_argument("--limit", type=float, default=1e-4)
    parser.add_argument("--against", type=pathlib.Path)
    args = parser.parse_args()
    folder = args.export_dir
    manifest = json.loads((folder / "arch.json").read_text())
    module = torch.jit.load(str(folder / "subnet.pt"), map_location="cpu")
    module.eval()
    check = load_file(str(folder / "check.safetensors"))
    with torch.no_grad():
        logits = module(check["input"])
        # Any batch size works: also run the examples one at a time.
        single = torch.cat([module(check["input"][i : i + 1]) for i in range(check["input"].shape[0])])
    diff = (logits - check["logits"]).abs().max().item()
    diff_single = (single - check["logits"]).abs().max().item()
    weights = load_file(str(folder / "weights.safetensors"))
    shapes_ok = {name: list(t.shape) for name, t in weights.items()} == {
        name: shape for name, shape in manifest["tensors"]
    }
    parameters = sum(t.numel() for name, t in weights.items() if not name.endswith(("running_mean", "running_var", "num_batches_tracked")))
    result = {
        "max_abs_diff": diff,
        "max_abs_diff_batch1": diff_single,
        "tensors": len(weights),
        "shapes_match_manifest": shapes_ok,
        "parameters_in_safetensors": parameters,
        "manifest_params": manifest["params"],
        "torch": torch.__version__,
    }
    ok = diff <= args.limit and diff_single <= args.limit and shapes_ok
    if args.against is not None:
        reference = load_file(str(args.against))
        with torch.no_grad():
            eval_logits = module(reference["input"])
        eval_diff = (eval_logits - reference["logits"]).abs().max().item()
        result["max_abs_diff_vs_nas_eval"] = eval_diff
        result["nas_eval_examples"] = reference["input"].shape[0]
        agree = (eval_logits.argmax(-1) == reference["logits"].argmax(-1)).float().mean().item()
        result["argmax_agreement_vs_nas_eval"] = agree
        ok = ok and eval_diff <= args.limit
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
