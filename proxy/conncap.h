/* Counts client connections per source address across all workers, so one address cannot take
 * every connection slot. Touched on accept and close only, never on the request path. */
#ifndef LG_CONNCAP_H
#define LG_CONNCAP_H

#include <sys/socket.h>

struct conncap;

struct conncap *conncap_new(int per_client_max);
void conncap_free(struct conncap *cc);
/* Returns 0 and counts the connection, or -1 if the address is at its cap. */
int conncap_acquire(struct conncap *cc, const struct sockaddr *sa);
void conncap_release(struct conncap *cc, const struct sockaddr *sa);

#endif
