// Loaded into the gate's process by the soak run (`node --import`): answers the soak driver's
// probes over the IPC channel with the process's own memory, its active resources by type
// (`process.getActiveResourcesInfo()`) and its event-loop delay since the previous probe.
// It adds one handle of its own (the IPC pipe), the same in every sample.
import { monitorEventLoopDelay } from 'node:perf_hooks';

if (process.send) {
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  process.on('message', (message) => {
    if (message?.type !== 'probe') return;
    const resources = {};
    for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] ?? 0) + 1;
    const memory = process.memoryUsage();
    const lagMaxMs = delay.max / 1e6;
    delay.reset();
    process.send?.({ type: 'probe', id: message.id, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external, resources, lagMaxMs });
  });
  // Never keep the gate alive for the sake of the probe: it must stop exactly as it would alone.
  process.channel?.unref();
}
