"""The names of the Prefect events this project sends, in one place: the code that emits them
(`app.events`, `tasks.gate`, `tasks.monitor`), the alert automations (`flows.automations`) and
the retrain trigger in prefect.yaml must agree. Plain strings: importing them costs nothing.
"""

DATA_ADDED = "mnist.data.added"
"""New trusted labels (`mnist data add`, `mnist data accept`, trusted feedback)."""
RETRAIN_DUE = "mnist.retrain.due"
"""Its resource label: "true" once the new labels reach `MNIST_RETRAIN_MIN_LABELS` (what
prefect.yaml's trigger of mnist-retrain matches)."""
MONITOR = "mnist.monitor"
"""The monitor's verdicts: `mnist.monitor.ok`, `mnist.monitor.drift`; also their resource's
prefix (`mnist.monitor.<registered model>`)."""
GATE_DECIDED = "mnist.gate.decided"
"""Every decision of the gate; its resource is `mnist.gate.<registered model>`."""
GATE_ALERT = "mnist.gate.alert"
"""Its resource label: "true" once `MNIST_ALERT_REJECTIONS` challengers were rejected in a
row (what the alert matches)."""
