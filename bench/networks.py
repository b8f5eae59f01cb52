"""The networks' speed: `python bench/networks.py [--seconds 5]`.

Free-running real-time factor (48 kHz, batch 1, one thread, compiled inference path) of the
STN and the GRU (hidden 8 and 16), beside a plain `nn.GRU(16)` + linear measured in the same
run, and teacher-forced STN training throughput (samples/s), on the diode clipper's data
(a small generated dataset, cached). Untrained weights: speed does not depend on them.
"""

import argparse
import json

import torch

import nets
from nets import speed
from nets.data import MaterialSpec, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of audio timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = dataset("diode_clipper", material_spec=MaterialSpec(train_seconds=4.0,
                                                               val_seconds=0.5,
                                                               test_seconds=0.5))

    def build(name, hidden):
        return nets.build(name, data.n_inputs, data.n_states, hidden=hidden, scaling=data.scaling)

    result = {
        "stn h=16 RTF": speed.realtime_factor(build("stn", 16), args.seconds),
        "gru h=8 RTF": speed.realtime_factor(build("gru", 8), args.seconds),
        "gru h=16 RTF": speed.realtime_factor(build("gru", 16), args.seconds),
        "plain nn.GRU h=16 RTF (reference, same run)": speed.reference_gru(16, args.seconds),
        "stn teacher-forced training, samples/s": speed.training_throughput(
            build("stn", 16), data, window=1, threads=1),
    }
    for key, value in result.items():
        print(f"{key:45s} {value:12.4g}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
