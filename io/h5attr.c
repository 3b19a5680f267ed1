/* io/h5attr.c: string attributes of HDF5 objects (see io/h5attr.h). */
#include "io/h5attr.h"

#include "mc.h"

int io_h5_attr_str(hid_t obj, const char *name, char *buf, size_t len)
{
    buf[0] = 0;
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, H5T_VARIABLE);
            H5Tset_cset(t, H5Tget_cset(ft));
            char *v = NULL;
            if (H5Aread(a, t, &v) >= 0 && v) {
                snprintf(buf, len, "%s", v);
                hid_t sp = H5Aget_space(a);
                H5Dvlen_reclaim(t, sp, H5P_DEFAULT, &v);
                H5Sclose(sp);
                rc = 0;
            }
            H5Tclose(t);
        } else {
            size_t n = H5Tget_size(ft);
            char *v = mc_calloc(n + 1, 1);
            if (H5Aread(a, ft, v) >= 0) {
                snprintf(buf, len, "%s", v);
                rc = 0;
            }
            free(v);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

int io_h5_attr_put_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, &value) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}
