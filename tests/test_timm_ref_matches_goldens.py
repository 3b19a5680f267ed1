"""tests/test_timm_ref_matches_goldens.py: tools/timm_ref.py reproduces real timm 0.9.10 on the four goldens in
../shared/refdata (embeddings and Dirichlet concentrations), loading the released files with strict=True.
Does not run morphcat (test_parity_goldens.py does); skips when ../shared is absent.
"""
import json
import os
import sys

import mctest

TOL = 1e-5  # relative max error max|ours-ref|/max|ref|; fp32 with timm's op order gives ~1e-7


def main():
    enc = mctest.shared_path("refdata", "encoders")
    import numpy as np
    import torch

    import timm_ref

    torch.set_num_threads(1)
    c = mctest.Checks()
    cases = [
        ("convnext_nano", "pytorch_model.bin"),
        ("efficientnet_b0", "pytorch_model.bin"),
        ("convnext_atto_safetensors", "model.safetensors"),
        ("zoobot_tree_effnetb0_grey", "model.ckpt"),
    ]
    for folder, fname in cases:
        d = os.path.join(enc, folder)
        sd, ckpt = timm_ref.load_weights(os.path.join(d, fname))
        if ckpt is not None:
            arch = ckpt["hyper_parameters"]["architecture_name"]
            enc_sd = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
            head_w, head_b = sd["head.1.0.weight"], sd["head.1.0.bias"]
            c.check(len(enc_sd) + 2 == len(sd), "%s: only encoder.* and head.1.0.* keys" % folder)
        else:
            with open(os.path.join(d, "config.json")) as f:
                arch = json.load(f)["architecture"]
            enc_sd = sd
        model = timm_ref.create(arch, in_chans=timm_ref.in_chans_of(enc_sd, arch))
        try:
            timm_ref.load_strict(model, enc_sd)
            c.check(True, "%s: %s loads into timm_ref.%s with strict=True" % (folder, fname, arch))
        except RuntimeError as e:
            c.check(False, "%s: strict load: %s" % (folder, e))
            continue
        model.eval()
        x = torch.from_numpy(np.load(os.path.join(d, "input.npy")))
        with torch.inference_mode():
            emb = model(x)
        ref = np.load(os.path.join(d, "embedding.npy"))
        err = mctest.rel_max_err(emb.numpy(), ref)
        c.check(err <= TOL, "%s: embedding %s rel max err %.3g (tol %g)" % (folder, ref.shape, err, TOL))
        if arch.startswith("convnext"):  # the other MLP form (Linear <-> 1x1 conv) on the same weights, same numbers
            linear_now = enc_sd["stages.0.blocks.0.mlp.fc1.weight"].dim() == 2
            other = timm_ref.create(arch, in_chans=timm_ref.in_chans_of(enc_sd, arch), conv_mlp=linear_now)
            want = other.state_dict()
            timm_ref.load_strict(other, {k: v.reshape(want[k].shape) for k, v in enc_sd.items()})
            with torch.inference_mode():
                err = mctest.rel_max_err(other.eval()(x).numpy(), ref)
            c.check(err <= TOL, "%s: same weights through the %s MLP form: rel max err %.3g (tol %g)"
                    % (folder, "1x1-conv" if other.stages[0].blocks[0].conv_mlp else "Linear", err, TOL))
        if fname.endswith(".safetensors"):  # our writer round-trips what our reader read
            import safetensors_io

            path = os.path.join(mctest.tmpdir(), "roundtrip.safetensors")
            safetensors_io.save(sd, path, metadata={"format": "pt"})
            back, meta = safetensors_io.load(path)
            same = list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
            c.check(same and meta == {"format": "pt"}, "%s: safetensors_io save/load round trip" % folder)
            os.remove(path)
            os.rmdir(os.path.dirname(path))
        if ckpt is not None:
            conc = timm_ref.dirichlet(emb, head_w, head_b).numpy()
            ref_c = np.load(os.path.join(d, "concentrations.npy"))
            err = mctest.rel_max_err(conc, ref_c)
            c.check(err <= TOL, "%s: concentrations %s rel max err %.3g (tol %g)" % (folder, ref_c.shape, err, TOL))
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
