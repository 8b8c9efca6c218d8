"""Distribution strategies for users who outgrow one device, or one machine.

``get_strategy(name)`` returns, per Keras backend:

=================  ==========================================  ===========================
name               TensorFlow backend (``tf.distribute``)      JAX backend (``keras.distribution``)
=================  ==========================================  ===========================
``default``        ``None`` (no distribution)                  ``None``
``mirrored``       ``MirroredStrategy(devices)``               ``DataParallel`` over all local devices
``data_parallel``  refused: use ``mirrored``                   ``DataParallel`` over all local devices
                                                               (a warning with only one device)
``multi_worker``   ``MultiWorkerMirroredStrategy`` over the    ``keras.distribution.initialize()`` +
                   workers of ``TF_CONFIG`` or of the Slurm    ``DataParallel`` over all processes'
                   job (``SlurmClusterResolver``)              devices (``KERAS_DISTRIBUTION_*``)
``tpu``            ``TPUStrategy`` (``TPUClusterResolver``)    ``DataParallel`` (JAX sees TPUs natively)
=================  ==========================================  ===========================

Pass the result to ``training.fit(..., strategy=...)``; fit builds the
training copy of the model, the optimizer and the metrics inside
:func:`strategy_scope` and copies the trained weights back into your model.

Several workers (``multi_worker``): every worker runs the same program.
Collective ops must be configured before TensorFlow runs its first op, so
call ``get_strategy("multi_worker")`` first thing (the CLI does); it blocks
until every worker of the cluster is up (at most
``$REMOTETRIMMER_CLUSTER_TIMEOUT`` seconds, default 600, then one line names
the addresses that did not answer). The batch size of a dataset is the
GLOBAL batch: each step, the global batch is split over all replicas (a
worker with one device trains on ``batch / num_workers`` samples), so the
optimizer, its step counter and the learning-rate schedule advance once per
global batch, exactly as in a single-process run with the same batch.
Who writes files is decided with :func:`is_chief`; :func:`broadcast_bytes`,
:func:`broadcast_json`, :func:`sync_from_chief`, :func:`agree` and
:func:`barrier` move the chief's decisions to the other workers.

TensorFlow (and JAX) are imported only inside these functions (never at
module import).
"""
import contextlib
import json
import os
import socket
import sys
import warnings

import keras
import numpy as np

__all__ = ["get_strategy", "strategy_scope", "is_distributed", "STRATEGIES",
           "StrategyError", "parse_tf_config", "cluster_from_env",
           "is_multi_worker", "is_chief", "num_workers", "worker_index",
           "describe", "broadcast_bytes", "broadcast_json", "sync_from_chief",
           "agree", "barrier", "prepare_dataset", "trainer_class"]

STRATEGIES = ("default", "mirrored", "multi_worker", "data_parallel", "tpu")
TIMEOUT_ENV = "REMOTETRIMMER_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
_EXAMPLE_TF_CONFIG = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}')
_MULTI_WORKER = {}   # one MultiWorkerMirroredStrategy per process


class StrategyError(ValueError):
    """A strategy that cannot be built here: bad ``TF_CONFIG``, a worker that
    does not answer, a name the backend does not have. One line, with the fix."""


# ----------------------------------------------------------- the cluster
def parse_tf_config(text):
    """Validates a ``TF_CONFIG`` string; returns it as a dict.

    Args:
        text: the JSON of ``TF_CONFIG``: ``{"cluster": {job: ["host:port", ...]},
            "task": {"type": job, "index": i}}``.

    Raises:
        StrategyError: naming what is wrong and showing a valid example.

    Example:

    ```python
    parse_tf_config(os.environ["TF_CONFIG"])["task"]   # {'type': 'worker', 'index': 0}
    ```
    """
    fix = f"set TF_CONFIG like {_EXAMPLE_TF_CONFIG}"
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({e}); {fix}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict) \
            or not cfg["cluster"]:
        raise StrategyError(f"TF_CONFIG has no \"cluster\" mapping of jobs to "
                            f"addresses; {fix}")
    seen = set()
    for job, addresses in cfg["cluster"].items():
        if isinstance(addresses, str) or not isinstance(addresses, (list, tuple)) \
                or not addresses:
            raise StrategyError(f"TF_CONFIG cluster job {job!r} must list "
                                f"\"host:port\" addresses; {fix}")
        for a in addresses:
            host, _, port = str(a).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise StrategyError(f"TF_CONFIG cluster job {job!r}: {a!r} is not "
                                    f"\"host:port\"; {fix}")
            if a in seen:
                raise StrategyError(f"TF_CONFIG lists the address {a} twice; give "
                                    "every worker its own host:port")
            seen.add(a)
    if not ({"chief", "worker"} & set(cfg["cluster"])):
        raise StrategyError(f"TF_CONFIG cluster has no \"worker\" (or \"chief\") "
                            f"job; {fix}")
    task = cfg.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise StrategyError("TF_CONFIG has no \"task\": {\"type\": ..., \"index\": ...} "
                            f"saying which worker this process is; {fix}")
    job, index = task["type"], task["index"]
    if job not in cfg["cluster"]:
        raise StrategyError(f"TF_CONFIG task type {job!r} is not a job of the "
                            f"cluster ({', '.join(cfg['cluster'])})")
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(cfg["cluster"][job]):
        raise StrategyError(f"TF_CONFIG task index {index!r} is outside 0.."
                            f"{len(cfg['cluster'][job]) - 1} (job {job!r} has "
                            f"{len(cfg['cluster'][job])} addresses)")
    return cfg


def cluster_from_env(environ=None):
    """Where the cluster of ``multi_worker`` is described.

    Returns:
        ``("tf_config", dict)`` if ``TF_CONFIG`` is set (validated), else
        ``("slurm", None)`` inside a Slurm job step of several tasks, else
        ``(None, None)`` (a cluster of one).
    """
    env = os.environ if environ is None else environ
    if env.get("TF_CONFIG", "").strip():
        return "tf_config", parse_tf_config(env["TF_CONFIG"])
    ntasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
    if "SLURM_PROCID" in env and ntasks.isdigit() and int(ntasks) > 1:
        return "slurm", None
    return None, None


def _peers(cluster, own):
    """The ``host:port`` of every chief / worker task except ``own``."""
    return [a for job in ("chief", "worker") for a in cluster.get(job, ())
            if a != own]


def _unreachable(addresses, timeout=1.0):
    """The addresses that do not accept a TCP connection."""
    down = []
    for a in addresses:
        host, _, port = a.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
        except OSError:
            down.append(a)
    return down


def _timeout_s():
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise StrategyError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds "
                            f">= 1, e.g. {TIMEOUT_ENV}=600")
    return value


def _wait_for_peers(own, peers, timeout):
    """Meets the other workers before TensorFlow starts its server.

    Listens on this worker's own port (so the others can see it is up) and
    connects to every peer until each answered once, either this rendezvous
    or its TensorFlow server. TensorFlow itself would wait forever.

    Raises:
        StrategyError: the own port is taken, or peers did not answer within
            ``timeout`` seconds (they are named).
    """
    import threading
    import time

    host, _, port = own.rpartition(":")
    listener = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(port)))
    except OSError as e:
        listener.close()
        raise StrategyError(f"TF_CONFIG: this worker cannot listen on {own} "
                            f"({e.strerror or e}); pick a free port for it in "
                            "TF_CONFIG on every worker") from None
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pending, deadline = list(peers), time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            pending = _unreachable(pending, timeout=1.0)
            if pending:
                time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()
    if pending:
        raise StrategyError(
            f"TF_CONFIG: no answer from {', '.join(pending)} within {timeout} s; "
            "start the same command on every worker of TF_CONFIG (check the "
            f"addresses and ports), or raise {TIMEOUT_ENV}")


def _multi_worker_tf():
    """The process's MultiWorkerMirroredStrategy (created once)."""
    if "tf" in _MULTI_WORKER:
        return _MULTI_WORKER["tf"]
    kind, cfg = cluster_from_env()
    timeout = _timeout_s()
    import tensorflow as tf  # TF-only path, imported lazily

    if kind == "slurm":
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    elif kind == "tf_config":
        own = cfg["cluster"][cfg["task"]["type"]][cfg["task"]["index"]]
        _wait_for_peers(own, _peers(cfg["cluster"], own), timeout)
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    else:
        resolver = None
        warnings.warn("--strategy=multi_worker without TF_CONFIG or a Slurm job of "
                      "several tasks: training runs as a single worker.", stacklevel=3)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as e:
        if "program startup" in str(e):
            raise StrategyError(
                "--strategy=multi_worker must be created before TensorFlow runs its "
                "first operation; call training.get_strategy('multi_worker') at the "
                "start of the program (the CLI does)") from None
        raise
    _MULTI_WORKER["tf"] = strategy
    return strategy


def _multi_worker_jax():
    """``keras.distribution.initialize()`` (once) + DataParallel over all devices."""
    if "jax" not in _MULTI_WORKER:
        env = {k: os.environ.get(f"KERAS_DISTRIBUTION_{k}", "").strip()
               for k in ("JOB_ADDRESSES", "NUM_PROCESSES", "PROCESS_ID")}
        fix = ("set KERAS_DISTRIBUTION_JOB_ADDRESSES=<host0:port>, "
               "KERAS_DISTRIBUTION_NUM_PROCESSES=<N> and "
               "KERAS_DISTRIBUTION_PROCESS_ID=<0..N-1> on every process")
        n, i = env["NUM_PROCESSES"], env["PROCESS_ID"]
        if (n or i) and not (n.isdigit() and i.isdigit() and int(i) < int(n)):
            raise StrategyError(f"KERAS_DISTRIBUTION_NUM_PROCESSES={n!r} / "
                                f"KERAS_DISTRIBUTION_PROCESS_ID={i!r}: need integers "
                                f"with 0 <= PROCESS_ID < NUM_PROCESSES; {fix}")
        try:
            keras.distribution.initialize()
        except Exception as e:  # noqa: BLE001 - jax raises many kinds
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StrategyError(f"--strategy=multi_worker: keras.distribution."
                                f"initialize() failed ({msg}); {fix}") from None
        _MULTI_WORKER["jax"] = True
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def get_strategy(  # long: one branch per strategy name
        name="default", devices=None, tpu=None):
    """Create the distribution object for ``name`` on the current backend.

    Args:
        name: one of :data:`STRATEGIES`.
        devices: optional device list (``mirrored`` / ``data_parallel``): TF
            device strings such as ``["/cpu:0", "/cpu:1"]``, or JAX devices.
        tpu: TPU address / name for ``TPUClusterResolver`` (TF backend).

    Returns:
        ``None`` for ``"default"``; a ``tf.distribute.Strategy`` (TF backend) or a
        ``keras.distribution.Distribution`` (JAX backend). ``multi_worker``
        returns the same object on every call of a process.

    Raises:
        ValueError: unknown name; :class:`StrategyError` (a ``ValueError``) for
            a name the backend does not have, a malformed ``TF_CONFIG``, or
            workers that do not answer in time.

    Example:

    ```python
    strategy = get_strategy("mirrored")
    rt.training.fit(model, train, recipe=recipe, strategy=strategy)
    ```
    """
    if name is None or name == "default":
        return None
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {STRATEGIES}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if name == "data_parallel":
            raise StrategyError(
                "--strategy=data_parallel is keras.distribution.DataParallel, for "
                "KERAS_BACKEND=jax; on TensorFlow use --strategy=mirrored (all "
                "devices of one machine) or --strategy=multi_worker (several)")
        if name == "multi_worker":
            return _multi_worker_tf()
        import tensorflow as tf  # TF-only path, imported lazily

        if name == "mirrored":
            return tf.distribute.MirroredStrategy(devices=devices)
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if backend == "jax":
        if name == "multi_worker":
            return _multi_worker_jax()
        if devices is None:
            devices = keras.distribution.list_devices()
        if name == "data_parallel" and len(devices) < 2:
            warnings.warn(f"--strategy=data_parallel sees one device ({devices[0]}): "
                          "training runs unsplit; on CPU set XLA_FLAGS="
                          "--xla_force_host_platform_device_count=N for N host "
                          "devices.", stacklevel=2)
        return keras.distribution.DataParallel(devices=devices)
    raise StrategyError(f"strategy {name!r} is not supported on the {backend!r} "
                        "backend; use KERAS_BACKEND=tensorflow (tf.distribute) or jax "
                        "(keras.distribution), or strategy='default'.")


def is_distributed(strategy):
    """True if ``strategy`` is a TF strategy or a Keras distribution."""
    return strategy is not None


def strategy_scope(strategy):
    """Context manager making ``strategy`` current (no-op for ``None``).

    Works for ``tf.distribute.Strategy`` (``.scope()``) and
    ``keras.distribution.Distribution`` (``.scope()``).

    Example:

    ```python
    with strategy_scope(get_strategy("mirrored")):
        model = build()
    ```
    """
    if strategy is None:
        return contextlib.nullcontext()
    scope = getattr(strategy, "scope", None)
    if scope is None:
        raise TypeError("strategy must be a tf.distribute.Strategy, a "
                        "keras.distribution.Distribution or None; got "
                        f"{type(strategy).__name__}.")
    return scope()


# ------------------------------------------------------- who is who
def _is_tf_multi_worker(strategy):
    tf = sys.modules.get("tensorflow")
    return (strategy is not None and tf is not None
            and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))


def _jax_processes():
    jax = sys.modules.get("jax")
    if jax is None or keras.backend.backend() != "jax":
        return 1, 0
    return int(jax.process_count()), int(jax.process_index())


def _tf_task(strategy):
    """``(cluster dict, task type, task id)`` of a MultiWorkerMirroredStrategy."""
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return spec, resolver.task_type if resolver else None, \
        resolver.task_id if resolver else None


def num_workers(strategy):
    """Number of worker processes training together (1 without multi_worker)."""
    if _is_tf_multi_worker(strategy):
        spec, _, _ = _tf_task(strategy)
        return max(1, len(spec.get("chief", ())) + len(spec.get("worker", ())))
    if strategy is not None:
        return _jax_processes()[0]
    return 1


def worker_index(strategy):
    """This process's index among the workers, 0 for the chief."""
    if _is_tf_multi_worker(strategy):
        spec, job, task = _tf_task(strategy)
        if job is None:
            return 0
        if job == "chief":
            return 0
        return int(task) + (1 if "chief" in spec else 0)
    if strategy is not None:
        return _jax_processes()[1]
    return 0


def is_multi_worker(strategy):
    """True when several processes train together (they must all run the same
    collective operations in the same order)."""
    return num_workers(strategy) > 1


def is_chief(strategy=None):
    """True for the process that writes files: the ``chief`` task of
    ``TF_CONFIG`` (else worker 0), JAX process 0, or any single process.

    Example:

    ```python
    if is_chief(strategy):
        model.save("runs/a/model.keras")
    ```
    """
    return worker_index(strategy) == 0


def describe(strategy):
    """``"worker 2/2 (worker:1)"``: this process's place in the cluster."""
    n, i = num_workers(strategy), worker_index(strategy)
    task = ""
    if _is_tf_multi_worker(strategy):
        _, job, tid = _tf_task(strategy)
        if job is not None:
            task = f" ({job}:{tid})"
    role = "chief" if i == 0 else "worker"
    return f"{role} {i + 1}/{n}{task}"


# ----------------------------------------- moving the chief's state to all
_REDUCERS = {}


def _reducer(strategy):
    """A compiled all-reduce (SUM) of a 1-D int64 tensor over the replicas:
    with ``everyone=False`` only global replica 0 (on the chief) contributes,
    so every worker receives the chief's value; else the first replica of
    every worker does. Traced once per strategy."""
    if id(strategy) not in _REDUCERS:
        import tensorflow as tf  # TF-only path, imported lazily
        local = len(strategy.extended.worker_devices)

        def contribute(value, everyone):
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            first = tf.equal(tf.where(everyone, rid % local, rid), 0)
            return tf.where(first, value, tf.zeros_like(value))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64),
                                      tf.TensorSpec([], tf.bool)])
        def reduce(value, everyone):
            per_replica = strategy.run(contribute, args=(value, everyone))
            return strategy.reduce("SUM", per_replica, axis=None)

        _REDUCERS[id(strategy)] = (strategy, reduce)   # keeps the id valid
    return _REDUCERS[id(strategy)][1]


def _sum_from_first_replica(strategy, array):
    """Every worker gets the chief's 1-D int64 ``array`` (same length
    everywhere; what the other workers pass is ignored)."""
    return np.asarray(_reducer(strategy)(np.asarray(array, np.int64), False))


def _sum_all(strategy, array):
    """All-reduce (SUM) of a 1-D int64 ``array`` over the workers."""
    return np.asarray(_reducer(strategy)(np.asarray(array, np.int64), True))


def broadcast_bytes(strategy, data):
    """The chief's ``data`` (bytes), on every worker.

    Every worker must call it at the same point (it is a collective); what the
    others pass is ignored. Without several workers it returns ``data``.

    Example:

    ```python
    blob = broadcast_bytes(strategy, path.read_bytes() if is_chief(strategy) else b"")
    ```
    """
    if not is_multi_worker(strategy):
        return bytes(data)
    chief = is_chief(strategy)
    data = bytes(data) if chief else b""
    if not _is_tf_multi_worker(strategy):   # JAX processes
        from jax.experimental import multihost_utils
        size = int(multihost_utils.broadcast_one_to_all(np.int64(len(data))))
        buf = np.frombuffer(data, np.uint8) if chief else np.zeros(size, np.uint8)
        return np.asarray(multihost_utils.broadcast_one_to_all(buf)).tobytes()
    size = int(_sum_from_first_replica(strategy, np.array([len(data)], np.int64))[0])
    padded = size + (-size) % 8
    if chief:   # 8 bytes per int64 word; adding the others' zeros is exact
        words = np.frombuffer(data + b"\0" * (padded - size), dtype=np.int64)
    else:
        words = np.zeros(padded // 8, dtype=np.int64)
    return _sum_from_first_replica(strategy, words).tobytes()[:size]


def broadcast_json(strategy, obj):
    """The chief's JSON-able ``obj``, on every worker (see :func:`broadcast_bytes`)."""
    text = json.dumps(obj, sort_keys=True) if is_chief(strategy) else ""
    return json.loads(broadcast_bytes(strategy, text.encode()).decode())


def sync_from_chief(strategy, model):
    """Sets every weight of ``model`` to the chief's values on all workers.

    ``fit`` calls it after copying the user's weights into the distributed
    copy: a worker whose model was initialised differently (another random
    init, say) then trains the chief's model, never a silently different one.
    """
    if not is_multi_worker(strategy):
        return
    weights = model.get_weights()
    blob = broadcast_bytes(strategy, b"".join(np.ascontiguousarray(w).tobytes()
                                              for w in weights))
    out, offset = [], 0
    for w in weights:
        n = w.nbytes
        out.append(np.frombuffer(blob[offset:offset + n], dtype=w.dtype).reshape(w.shape))
        offset += n
    model.set_weights(out)


def agree(strategy, value):
    """True on every worker if all workers hold the same ``value`` (a string,
    e.g. a digest) as the chief; False on every worker otherwise."""
    if not is_multi_worker(strategy):
        return True
    chief_value = broadcast_json(strategy, value)
    mismatch = np.array([0 if value == chief_value else 1], np.int64)
    if not _is_tf_multi_worker(strategy):
        from jax.experimental import multihost_utils
        return int(np.sum(multihost_utils.process_allgather(mismatch))) == 0
    return int(_sum_all(strategy, mismatch)[0]) == 0


def barrier(strategy):
    """Returns when every worker has reached it."""
    if is_multi_worker(strategy):
        agree(strategy, "barrier")


# ----------------------------------------------------- training support
def prepare_dataset(strategy, data):
    """A ``tf.data.Dataset`` made ready for ``strategy``: under multi_worker
    every worker reads the same (seeded) dataset and keeps its share of each
    global batch (``AutoShardPolicy.DATA``, so the split does not depend on
    how the files are laid out). Anything else is returned unchanged."""
    if not _is_tf_multi_worker(strategy) or not hasattr(data, "with_options"):
        return data
    import tensorflow as tf  # TF-only path, imported lazily
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


_TRAINER_CLASSES = {}


def trainer_class(cls, strategy):
    """``cls`` (a ``keras.Model`` subclass), or under TF multi_worker a subclass
    working around two Keras 3 gaps with ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585): the symbolic build reduces a whole ``(x, y)``
    batch across workers (TF cannot reduce a nested structure there), and the
    per-step logs are reduced along an axis that scalars do not have. The
    subclass builds from the first local replica's batch and returns the step
    logs with a leading axis of 1, reduced by Keras to the replica mean; the
    epoch logs come from the (all-reduced) metrics, as without it."""
    if not _is_tf_multi_worker(strategy):
        return cls
    if cls not in _TRAINER_CLASSES:
        import tensorflow as tf  # TF-only path, imported lazily

        def _local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return value.values[0]
            return value

        def _zeros_batch(epoch_iterator):
            # A batch of zeros shaped like the dataset's elements: building
            # from it reads no data, so a reshuffling dataset's first epoch
            # is the same order as without a strategy (Keras would draw one
            # batch here, which advances the shuffle by one epoch).
            adapter = getattr(epoch_iterator, "data_adapter", None)
            try:
                spec = adapter.get_tf_dataset().element_spec
            except Exception:  # noqa: BLE001 - another adapter: read a batch
                return None
            return keras.tree.map_structure(
                lambda t: tf.zeros([d if d is not None else 1 for d in t.shape],
                                   t.dtype), spec)

        def _rank1(logs):
            return keras.tree.map_structure(lambda v: tf.reshape(v, (1,)), logs)

        class MultiWorker(cls):
            def _maybe_symbolic_build(self, iterator=None, data_batch=None):
                if iterator is not None and data_batch is None:
                    data_batch = _zeros_batch(iterator)
                    if data_batch is None:
                        for _, _, it in iterator:
                            data_batch = keras.tree.map_structure(_local, next(it))
                            break
                return super()._maybe_symbolic_build(data_batch=data_batch)

            def train_step(self, data):
                return _rank1(super().train_step(data))

            def test_step(self, data):
                return _rank1(super().test_step(data))

        MultiWorker.__name__ = MultiWorker.__qualname__ = f"MultiWorker{cls.__name__}"
        _TRAINER_CLASSES[cls] = MultiWorker
    return _TRAINER_CLASSES[cls]


# --- reproducible runs: seeding + deterministic kernels ----------------------
def make_deterministic(seed, kernels=True):
    """Seeds every RNG and asks the backend for deterministic kernels.

    Seeds Python, numpy and Keras (``training.set_seed``); on the
    TensorFlow backend also turns on ``tf.config.experimental.
    enable_op_determinism()`` (process-wide: reductions, convolutions and
    tf.data run in a fixed order). JAX on CPU is deterministic already.

    Args:
        seed: int.
        kernels: also turn on deterministic kernels (TF op determinism; it
            cannot be turned off again in this process). False only seeds.

    Returns:
        A dict for the run report: ``{"seed", "backend", "op_determinism"}``
        (``op_determinism`` is a string naming what failed, if it could not
        be turned on).

    Example:

    ```python
    make_deterministic(0)   # same seed + same machine -> bitwise-equal models
    ```
    """
    from remotetrimmer_tf.training.fit import set_seed  # no TF import on JAX
    backend = keras.backend.backend()
    set_seed(int(seed))
    info = {"seed": int(seed), "backend": backend, "op_determinism": backend != "tensorflow"}
    if not kernels:
        info["op_determinism"] = "off (deterministic=False)"
    elif backend == "tensorflow":
        import tensorflow as tf  # TF-only path, imported lazily
        try:
            tf.config.experimental.enable_op_determinism()
            info["op_determinism"] = True
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            info["op_determinism"] = f"not available ({type(e).__name__}: {e})"
    return info
