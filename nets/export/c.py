"""An STN as one self-contained C99 file: `init()` and `process(in, out, n)`.

    void init(void);                                   the start state: the circuit at rest
    void process(const float *in, float *out, int n);  n samples, volts in, volts out

The file holds the trained weights as constants and runs the STN's recurrence as
`simulate --model` does (see `nets.stn`), in the model's scaled units:

    un = (u - u_mean) / u_std
    x[n] = x[n-1] + MLP([un[n], un[n-1], x[n-1]])     tanh layers, then a linear one
    y[n] = y_std (readout [x[n], un[n]] + correction([x[n], un[n]])) + y_mean

It computes in double (define NODALNET_REAL=float for single precision) and keeps its state in
file-level variables: one model per program, one channel. It includes only <math.h>; link with
-lm. The sample rate it was trained at is NODALNET_SAMPLE_RATE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import weights
from .plugin import check_single_input, provenance, start_state

KINDS = ("stn",)


def _num(value: float) -> str:
    text = repr(float(value))
    return text if any(c in text for c in ".en") else text + ".0"


def _array(name: str, a: np.ndarray) -> str:
    a = np.asarray(a, dtype=np.float64)
    dims = "".join(f"[{n}]" for n in a.shape)

    def nested(x):
        if x.ndim == 1:
            return "{" + ", ".join(_num(v) for v in x) + "}"
        return "{\n    " + ",\n    ".join(nested(row) for row in x) + "}"

    return f"static const real {name}{dims} = {nested(a)};\n"


def _dense(name: str, n_in: int, n_out: int, src: str, dst: str, tanh: bool) -> str:
    value = "tanh(acc)" if tanh else "acc"
    return (f"    for (i = 0; i < {n_out}; ++i) {{\n"
            f"        real acc = {name}_B[i];\n"
            f"        for (j = 0; j < {n_in}; ++j) acc += {name}_W[i][j] * {src}[j];\n"
            f"        {dst}[i] = {value};\n"
            f"    }}\n")


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], prefix: str, src: str,
         out: str) -> tuple[str, str, int]:
    """Constants and loop code of a tanh MLP (last layer linear) from `src` into `out`."""
    consts, code, buffers = "", "", 0
    current = src
    for index, (w, b) in enumerate(layers):
        name = f"{prefix}{index}"
        consts += _array(f"{name}_W", w) + _array(f"{name}_B", b)
        last = index == len(layers) - 1
        dst = out if last else f"{prefix.lower()}{index}"
        if not last:
            code += f"    real {dst}[{w.shape[0]}];\n"
            buffers += 1
        code += _dense(name, w.shape[1], w.shape[0], current, dst, tanh=not last)
        current = dst
    return consts, code, buffers


def source(model, run_dir: str | Path) -> str:
    """The C99 source of an STN model."""
    check_single_input(model, "C")
    layers = weights.numpy(weights.stn_layers(model))
    scale = weights.scaling(model)
    ns, history = model.n_states, int(model.history)
    n_features = 1 + history + ns
    if layers.depth:
        mlp = [(np.concatenate([layers.w_u, layers.w_x], axis=1), layers.b_1)]
        mlp += list(zip(layers.w_h, layers.b_h, strict=True))
        mlp.append((layers.w_o, layers.b_o))
    else:
        mlp = [(layers.w_o, layers.b_o)]
    s0 = start_state(model)
    info = provenance(model, run_dir)
    mlp_consts, mlp_code, _ = _mlp(mlp, "M", "f", "dx")
    corr_consts, corr_code, _ = _mlp(list(layers.correction), "C", "z", "corr")
    has_corr = bool(layers.correction)

    lines = [
        f"/* {info['circuit'] or 'model'}: a state trajectory network (STN), exported by "
        "nodalnet. */\n",
        "/* " + "\n * ".join(f"{k}: {json.dumps(v)}" for k, v in info.items()) + "\n */\n",
        "/* void init(void): the start state (the circuit at rest).\n"
        " * void process(const float *in, float *out, int n): n samples, volts in, volts out\n"
        f" * at {_num(model.sample_rate)} Hz. Computes in NODALNET_REAL (default double);"
        " link with -lm. */\n\n",
        "#include <math.h>\n\n",
        "#ifndef NODALNET_REAL\n#define NODALNET_REAL double\n#endif\n",
        "typedef NODALNET_REAL real;\n\n",
        f"#define NODALNET_SAMPLE_RATE {_num(model.sample_rate)}\n",
        f"#define N_STATES {ns}\n#define N_FEATURES {n_features}\n\n",
        f"static const real U_MEAN = {_num(scale['u_mean'][0])}, "
        f"U_STD = {_num(scale['u_std'][0])};\n",
        f"static const real Y_MEAN = {_num(scale['y_mean'][0])}, "
        f"Y_STD = {_num(scale['y_std'][0])};\n",
        _array("X_START", s0[:ns]),
        f"static const real U_PREV_START = {_num(s0[ns] if history else 0.0)};\n",
        mlp_consts,
        _array("R_W", layers.readout_w[0]),
        f"static const real R_B = {_num(layers.readout_b[0])};\n",
        corr_consts,
        "\nstatic real x[N_STATES];   /* scaled states */\n",
        "static real u_prev;        /* the previous scaled input */\n\n",
        "void init(void)\n{\n    int i;\n",
        "    for (i = 0; i < N_STATES; ++i) x[i] = X_START[i];\n",
        "    u_prev = U_PREV_START;\n}\n\n",
        "void process(const float *in, float *out, int n)\n{\n",
        "    int t, i, j;\n",
        "    for (t = 0; t < n; ++t) {\n",
        "        real f[N_FEATURES], dx[N_STATES], z[N_STATES + 1], y;\n",
        "        real un = ((real)in[t] - U_MEAN) / U_STD;\n",
        "        f[0] = un;\n",
        "        f[1] = u_prev;\n" if history else "",
        f"        for (i = 0; i < N_STATES; ++i) f[{1 + history} + i] = x[i];\n",
        "        {\n", _indent(mlp_code), "        }\n",
        "        for (i = 0; i < N_STATES; ++i) { x[i] += dx[i]; z[i] = x[i]; }\n",
        "        z[N_STATES] = un;\n",
        "        y = R_B;\n",
        "        for (j = 0; j < N_STATES + 1; ++j) y += R_W[j] * z[j];\n",
    ]
    if has_corr:
        lines += ["        {\n", "            real corr[1];\n", _indent(corr_code),
                  "            y += corr[0];\n", "        }\n"]
    lines += [
        "        out[t] = (float)(y * Y_STD + Y_MEAN);\n",
        "        u_prev = un;\n" if history else "",
        "    }\n}\n",
    ]
    return "".join(lines)


def _indent(code: str) -> str:
    return "".join("        " + line + "\n" if line else "\n" for line in code.splitlines())
