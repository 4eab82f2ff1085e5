//! Embedding: a host program creates its own wgpu device and hands it to l2o (`Context::from_wgpu`), exactly as
//! in the README snippet.

use l2o::engine::{Context, Precision, ScalarOut, wgpu};

#[test]
fn from_wgpu_runs_kernels_on_the_hosts_device() {
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("adapter");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
            .expect("device");
    // f64 on a device created without SHADER_F64 is refused with a clear message
    let e = Context::from_wgpu(device.clone(), queue.clone(), Precision::F64)
        .err()
        .expect("must refuse f64");
    assert!(format!("{e}").contains("SHADER_F64"));
    let ctx = Context::from_wgpu(device, queue, Precision::F32).unwrap();
    let x = ctx.upload("x", &[1.0, 2.0, 3.0]).unwrap();
    let out = ctx.zeros("out", 1).unwrap();
    let d = l2o::engine::dot(
        &ctx,
        3,
        1,
        x.view(3),
        x.view(3),
        ScalarOut {
            buf: &out,
            stride: 1,
            col: 0,
        },
        None,
    )
    .unwrap();
    ctx.submit(&d).unwrap();
    assert_eq!(ctx.read(&out).unwrap()[0], 14.0);
}
