/* health_cmd.h: `keyhold health`, the exec probe: asks keyholdd's
 * grpc.health.v1.Health/Check over the sidecar socket. */
#ifndef KH_HEALTH_CMD_H
#define KH_HEALTH_CMD_H

int kh_cli_health(int argc, char **argv);

#endif /* KH_HEALTH_CMD_H */
