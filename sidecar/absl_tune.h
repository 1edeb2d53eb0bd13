/* absl_tune.h: process-wide settings of the absl runtime under gRPC. */
#ifndef KH_ABSL_TUNE_H
#define KH_ABSL_TUNE_H

#ifdef __cplusplus
extern "C" {
#endif

/* kh_absl_tune turns off absl::Mutex's debug deadlock detector (see
 * absl_tune.cc). Call once, before grpc_init(). */
void kh_absl_tune(void);

#ifdef __cplusplus
}
#endif

#endif /* KH_ABSL_TUNE_H */
