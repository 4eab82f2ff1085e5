"""List the adapters l2o can run on and open one (L2O_BACKEND / L2O_ADAPTER choose, as for the CLI)."""
import l2o

for a in l2o.adapters():
    print(f"{a['name']:40s} {a['backend']:8s} {a['device_type']:14s} f64={a['f64']}")
ctx = l2o.Context(precision="f32")
print("chosen:", ctx)
