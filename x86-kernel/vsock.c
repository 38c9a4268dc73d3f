/* The virtio-vsock check (placeholder until the driver lands). */
#include "virtio.h"

int check_virtio_vsock(char *msg, size_t n)
{
	ksnprintf(msg, n, "no virtio-vsock device");
	return SKIP;
}
