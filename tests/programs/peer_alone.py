"""The timm peer as its own environment runs it: without TensorFlow or Keras.

    python tests/programs/peer_alone.py [ARGS...]

With ARGS, runs `benchmarks.peer_timm.main(ARGS)` (its JSON lines on stdout); without, only
imports it and prints common's machine record with no software versions. Either way it then
fails if Keras, tf_keras or TensorFlow was imported: the peer's environment has none of them
(benchmarks/requirements-peer.txt), so the peer may share only common's standard-library parts.
"""

import json
import sys

from benchmarks import common, peer_timm

if sys.argv[1:]:
    peer_timm.main(sys.argv[1:])
else:
    print(json.dumps(common.machine(software=dict)))
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"keras", "tf_keras", "tensorflow"})
if loaded:
    sys.exit(f"the peer imported {', '.join(loaded)}")
