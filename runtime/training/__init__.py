"""TTFS training: data (``data``: spike-time data sets, the latency encoder; ``datasets``: yin-yang and MNIST16),
THE training loop (``loop.fit``) with its forward pass from software or a device (``forward``), the one evaluation
loop (``evaluation.evaluate``), the built-in tasks as presets (``presets``) and their end-to-end runs
(``tasks.train_task``), the energy estimate and process performance settings."""
