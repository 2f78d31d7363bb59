/* gui_paint: an X client that repaints its whole window as fast as the X server takes it
 * (one full-window fill per frame, alternating colours, a round trip after each so that
 * frames are not just queued). Used by bench/gui.sh both in a qube (through the GUI
 * daemon) and directly on the host display, as the peer.
 *   gui_paint WIDTH HEIGHT SECONDS TITLE      prints "frames_per_second N" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xcb/xcb.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return fprintf(stderr, "usage: gui_paint WIDTH HEIGHT SECONDS TITLE\n"), 2;
    uint16_t w = (uint16_t)atoi(argv[1]), h = (uint16_t)atoi(argv[2]);
    double secs = atof(argv[3]);
    xcb_connection_t *c = xcb_connect(NULL, NULL);
    if (xcb_connection_has_error(c))
        return fprintf(stderr, "gui_paint: no display\n"), 1;
    xcb_screen_t *s = xcb_setup_roots_iterator(xcb_get_setup(c)).data;
    xcb_window_t win = xcb_generate_id(c);
    uint32_t v[] = { 0, XCB_EVENT_MASK_EXPOSURE };
    xcb_create_window(c, XCB_COPY_FROM_PARENT, win, s->root, 0, 0, w, h, 0, XCB_WINDOW_CLASS_INPUT_OUTPUT,
                      s->root_visual, XCB_CW_BACK_PIXEL | XCB_CW_EVENT_MASK, v);
    xcb_change_property(c, XCB_PROP_MODE_REPLACE, win, XCB_ATOM_WM_NAME, XCB_ATOM_STRING, 8,
                        (uint32_t)strlen(argv[4]), argv[4]);
    xcb_map_window(c, win);
    xcb_gcontext_t gc = xcb_generate_id(c);
    xcb_create_gc(c, gc, win, 0, NULL);
    free(xcb_get_input_focus_reply(c, xcb_get_input_focus(c), NULL));
    double t0 = now(), end = t0 + secs;
    long frames = 0;
    while (now() < end) {
        uint32_t col = (frames & 1) ? 0x3465a4 : 0xedd400;
        xcb_change_gc(c, gc, XCB_GC_FOREGROUND, &col);
        xcb_rectangle_t r = { 0, 0, w, h };
        xcb_poly_fill_rectangle(c, win, gc, 1, &r);
        free(xcb_get_input_focus_reply(c, xcb_get_input_focus(c), NULL));
        frames++;
    }
    printf("frames_per_second %.1f\n", frames / (now() - t0));
    xcb_disconnect(c);
    return 0;
}
